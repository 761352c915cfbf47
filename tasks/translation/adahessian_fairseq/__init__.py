"""fairseq plugin (``--user-dir``) for the AdaHessian suite; no fork of fairseq.

Registers

- optimizer ``adahessian``: AdaHessian (this repository's ``optim`` package) inside fairseq's training step, with
  the Hessian-vector product computed in ``backward`` and kept consistent with fairseq's gradient normalisation,
  clipping, gradient accumulation (``--update-freq``) and ``legacy_ddp`` all-reduce;
- optimizer ``sophiah``: Sophia-H (``optim.SophiaH``) the same way (any ``optim.SecondOrderOptimizer`` can be
  registered like these two: a ``FairseqSecondOrder`` subclass naming its inner class and its options);
- optimizer ``torch_adam``: ``torch.optim.Adam`` (coupled L2 weight decay; fairseq's own ``adam`` is AdamW);
- task ``translation_suite``: fairseq's ``translation`` task that runs attention on the math SDPA backend on steps
  where AdaHessian needs a double backward, and writes per-update timings and peak memory to ``--step-log``.

Load it with ``fairseq-train ... --user-dir tasks/translation/adahessian_fairseq``. Import it only that way
(``fairseq.utils.import_user_module``): importing it a second time under another module name would register the
optimizer twice.
"""

from . import optimizer, task  # noqa: F401  (registration side effects)
