"""Command-line front ends (``cmb-detect``, ``cmb-train``, ``cmb-eval``, ``cmb-phantom``) over the engine."""
