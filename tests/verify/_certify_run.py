"""Worker for the multi-process certify_dataset tests: ``torchrun ... _certify_run.py JOB...``.

Every ``JOB`` is a ``torch.save``'d dict: the tiny model's config and state, the sentences,
the spec (``("radius", {...})`` or ``("ball", eps, p)``), certify_dataset's keyword arguments
``fail_lengths`` (sentence lengths whose bound computation raises), ``exit_lengths``
(lengths at which the process dies at once) and ``slow`` (``(rank, seconds)``: that rank
sleeps so long in every chunk, a slow GPU).  ``--join`` before the jobs leaves joining the
group to certify_dataset.  The jobs run one
after the other in one process group (joined here, so certify_dataset uses a group it did not
create); every rank saves the result it got to ``JOB.rank{r}.npz``.
"""

from __future__ import annotations

import os
import sys
import time

import torch
import torch.distributed as dist

from toolkit.verify import LpBall, RadiusSearch, TransformerClassifier, certify_dataset


class FailingClassifier(TransformerClassifier):
    """A TransformerClassifier whose graph raises at the given lengths (a failing shard),
    or takes ``slow[1]`` seconds longer on rank ``slow[0]`` (the graph is built once a chunk)."""

    fail_lengths: tuple[int, ...] = ()
    exit_lengths: tuple[int, ...] = ()
    slow: tuple[int, float] | None = None

    def graph(self, T):
        if self.slow is not None and int(os.environ.get("RANK", "0")) == self.slow[0]:
            time.sleep(self.slow[1])
        if T in self.exit_lengths:  # a hard crash: no exception, no clean-up
            os._exit(3)
        if T in self.fail_lengths:
            raise RuntimeError(f"injected failure at length {T}")
        return super().graph(T)


def build(job):
    model = FailingClassifier(**job["config"])
    model.load_state_dict(job["state"])
    model.fail_lengths = tuple(job.get("fail_lengths", ()))
    model.exit_lengths = tuple(job.get("exit_lengths", ()))
    model.slow = job.get("slow")
    kind, *args = job["spec"]
    spec = RadiusSearch(**args[0]) if kind == "radius" else LpBall(args[0], p=args[1])
    return model.double().eval(), spec


def main(paths, own_group=True):
    """Run the jobs; with ``own_group=False`` certify_dataset joins the group itself (with
    its ``timeout``)."""
    torch.set_num_threads(1)
    if own_group:
        dist.init_process_group("gloo")
    try:
        for path in paths:
            job = torch.load(path, weights_only=False)
            model, spec = build(job)
            cert = certify_dataset(model, job["sentences"], spec, **job["kwargs"])
            cert.save(f"{path}.rank{os.environ['RANK']}.npz")
    finally:
        if own_group:
            dist.destroy_process_group()


if __name__ == "__main__":
    own = sys.argv[1] != "--join"
    main(sys.argv[1 + (not own) :], own_group=own)
