"""The PACS worker behind ``cmb-pacs``: Orthanc's REST API in, DICOM SEG and SR out."""
