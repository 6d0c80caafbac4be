"""WebDataset shards: the format, the `gandist shard` writer, the indexer and the training stream.

format   tar members per sample, the dataset.json manifest, encode/decode
write    `gandist shard` (entry point), run in steps by plan, labels, encode, tasks, workers,
         report
index    `gandist shard index`: a manifest for shards written by another tool
stream   ShardStream: shards -> per-rank batches
"""
