"""Readers and writers for the file contracts of docs/design.md (TSV and HDF5), atomic writes."""
