"""Wire schemas (protobuf) of the list formats; ``export.proto`` is the schema of record."""
