"""Readers and writers for the file contracts of DESIGN.md (TSV and HDF5), atomic writes."""
