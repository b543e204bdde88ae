"""ccpipe's pipelines: ``batch`` (files to regional Parquet). Each has one PipelineOptions subclass."""
