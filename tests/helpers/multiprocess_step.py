"""One process of a two-process data-parallel training step (run by test_multihost.py)."""
import json
import sys

import jax

jax.config.update("jax_cpu_collectives_implementation", "gloo")
port, process_id = sys.argv[1], int(sys.argv[2])
jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                           process_id=process_id)

from gram_jax import parallel  # noqa: E402
from gram_jax.data import loader  # noqa: E402
from gram_jax.stages import common
from tests.helpers import train_fixtures  # noqa: E402

mesh = parallel.make_mesh({"data": 2, "fsdp": 1, "tensor": 1})
trainer, model_config, c = train_fixtures.make_trainer(mesh)
state = trainer.init_state(common.initial_params(c, model_config, mesh), seed=0)
data = train_fixtures.random_dataset(seed=process_id)  # each host reads its own shard
batches = loader.BatchIterator(data, rows=4, seq_len=32, seed=1)
losses = []
step = trainer.compile_step()
for _ in range(2):
  state, metrics = step(state, trainer.put_batch(next(batches)))
  losses.append(float(metrics["loss"]))
print("RESULT " + json.dumps({"process": jax.process_index(), "devices": jax.device_count(),
                              "losses": losses}))
