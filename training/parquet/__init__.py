"""Parquet datasets: where the files are (`files`) and their rows as normalised record
batches for the streaming passes (`source`). The format itself is `training.formats.parquet`."""
