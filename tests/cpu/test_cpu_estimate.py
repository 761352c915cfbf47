"""scripts.cpu_estimate counts every evaluation a cpu-scale run makes, within-epoch ones included."""

import math

from scripts.cpu_estimate import estimate

SYNTHETIC = ["data.source=synthetic", "data.synthetic.vocab_size=200", "data.synthetic.train_tokens=20000",
             "data.synthetic.valid_tokens=2000", "data.synthetic.test_tokens=2000", "task.model.d_model=32",
             "task.model.d_ff=64", "trainer.batch_size=8"]


def test_within_epoch_evaluations_are_counted():
    # 79 steps per epoch (20,000 tokens in 8 streams, windows of 32), 2 epochs = 158 steps; every 20 steps: 20, 40,
    # 60 (epoch 1), 80..140 (epoch 2; 158 is the run's end): 7 within-epoch evaluations + 2 epoch ends
    r = estimate("ptb_transformer", "sgd", [*SYNTHETIC, "task.epochs=2", "trainer.eval_every=20"], steps=1,
                 eval_batches=1)
    assert (r["steps"], r["evals"]) == (158, 9)
    assert math.isclose(r["total_s"], 158 * r["step_s"] + 9 * r["eval_s"])
    own = estimate("ptb_transformer", "sgd", [*SYNTHETIC, "task.epochs=2"], steps=1, eval_batches=1)
    assert own["evals"] == 3  # the PTB cpu scale's own eval_every=97: step 97, then the 2 epoch ends
    plain = estimate("ptb_transformer", "sgd", [*SYNTHETIC, "task.epochs=2", "trainer.eval_every=null"], steps=1,
                     eval_batches=1)
    assert plain["evals"] == 2
