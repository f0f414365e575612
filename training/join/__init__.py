"""`afm-join`: the impression log joined with click events into a labelled training day.

    cli        the console script: arguments, scratch space, the day moved into place
    selection  which files and models of the log are joined (one model, one feature schema)
    events     event files (CSV, JSON lines, Parquet) checked and read into one shape
    engine     the join in DuckDB (out of core, within a memory limit)
    report     the counts, checked, as JSON and as a summary
    window     attribution windows (`1h`, `30m`)

The impression log's format is `model.impressions`; docs/IMPRESSIONS.md describes both.
"""
