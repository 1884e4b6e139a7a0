"""The sharded train step, the training loop, objectives, metrics and FLOP counts."""
