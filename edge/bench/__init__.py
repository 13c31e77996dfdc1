"""The one-shot benchmark (the seeds' protocol) and the dataset helpers that write its manifests."""
