"""Data: images on disk (`sources`), which images form a pair (`pairs`), and the
torch sampler that turns them into training and validation mixtures (`sampler`)."""
