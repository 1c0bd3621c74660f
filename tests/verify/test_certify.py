"""certify_dataset: one process against two gloo processes (torchrun), resume, failures."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from toolkit.verify import (
    LpBall,
    RadiusSearch,
    certified_radius,
    certify_dataset,
    load_certification,
    margin_bounds,
)

from ._certify_run import FailingClassifier
from ._helpers import tiny_model

RUNNER = Path(__file__).with_name("_certify_run.py")
ROOT = Path(__file__).resolve().parents[2]
LENGTHS = (3, 5, 4, 5, 2, 4)
SEARCH = dict(p=2, tol=0.1, max_eps=2.0)


@pytest.fixture(scope="module")
def model():
    return tiny_model(3, num_classes=3)


@pytest.fixture(scope="module")
def sentences(model):
    g = torch.Generator().manual_seed(7)
    return [torch.randint(0, 20, (T,), generator=g) for T in LENGTHS]


@pytest.fixture(scope="module")
def reference(model, sentences):
    return certify_dataset(model, sentences, RadiusSearch(**SEARCH), batch_size=2, progress=False)


def _failing(model, lengths):
    m = FailingClassifier(**model.config)
    m.load_state_dict(model.state_dict())
    m.fail_lengths = tuple(lengths)
    return m.double().eval()


#: seconds rank 1 sleeps in every chunk of the "slow" job
SLOW = 1.0


def _job(path, model, sentences, kwargs, fail_lengths=(), exit_lengths=(), slow=None):
    torch.save(
        dict(
            config=model.config,
            state=model.state_dict(),
            sentences=[s.tolist() for s in sentences],
            spec=("radius", SEARCH),
            kwargs=kwargs,
            fail_lengths=list(fail_lengths),
            exit_lengths=list(exit_lengths),
            slow=slow,
        ),
        path,
    )
    return path


def _torchrun(tmp, model, sentences, nproc, specs, join=False):
    """One torchrun launch of ``nproc`` processes running the jobs ``specs``
    (name -> (batch_size, fail_lengths, slow)) one after the other, in a gloo group the
    runner joins (``join``: certify_dataset joins the group itself: NCCL where there are
    GPUs).  -> {name: [result of every rank]}"""
    jobs = {}
    for name, (batch_size, fail, slow) in specs.items():
        (tmp / name).mkdir()
        kwargs = dict(batch_size=batch_size, progress=False, out=str(tmp / name / "cert.npz"))
        jobs[name] = _job(tmp / name / "job.pt", model, sentences, kwargs, fail, slow=slow)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc-per-node={nproc}", str(RUNNER), *["--join"] * join]
    cmd += list(map(str, jobs.values()))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {
        name: [load_certification(f"{job}.rank{r}.npz") for r in range(nproc)]
        for name, job in jobs.items()
    }


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, model, sentences):
    """One torchrun launch of two gloo processes running three jobs: the plain data set; the
    same with every sentence of length 5 failing; and one chunk per sentence with rank 1
    sleeping SLOW seconds in every chunk.  -> {job: [result of rank 0, 1]}"""
    specs = {"plain": (2, (), None), "failing": (2, (5,), None), "slow": (1, (), (1, SLOW))}
    return _torchrun(tmp_path_factory.mktemp("torchrun"), model, sentences, 2, specs)


def _check_queue(cert, n_chunks):
    """Every chunk was done by exactly one rank, and the ranks agree on who did what."""
    ranks = cert.meta["ranks"]
    ids = [cid for st in ranks for cid in st["chunk_ids"]]
    assert sorted(ids) == list(range(n_chunks)), ids
    for st in ranks:
        assert st["chunks"] == len(st["chunk_ids"])
        assert 0 <= st["busy"] <= st["seconds"] + 1e-9
        assert len(st["chunk_seconds"]) == st["chunks"]
        assert st["busy"] == pytest.approx(sum(st["chunk_seconds"]))


def test_single_process_equals_certified_radius(model, sentences, reference):
    """The data-set run is certified_radius on every sentence (independent batching)."""
    assert reference.kind == "radius" and reference.values.shape == (6, 5)
    assert reference.meta["world_size"] == 1 and reference.failures == ()
    for i, s in enumerate(sentences):
        e = model.embed(s).detach()
        y = int(model(e[None]).argmax())
        assert reference.labels[i] == y
        r = certified_radius(model, e, y, list(range(len(s))), method="crown", **SEARCH)
        np.testing.assert_allclose(reference.values[i, : len(s)], r.numpy(), atol=SEARCH["tol"])
        assert np.isnan(reference.values[i, len(s) :]).all()
    assert (reference.values[~np.isnan(reference.values)] > 0).all()


def test_two_gloo_processes_equal_one(two_processes, reference):
    ranks = two_processes["plain"]
    for cert in ranks:  # every rank gets the whole result, in input order
        assert cert.meta["world_size"] == 2
        assert cert.same_values(reference)
        np.testing.assert_array_equal(cert.values, reference.values)
        np.testing.assert_array_equal(cert.labels, reference.labels)
        _check_queue(cert, reference.meta["chunks"])
        assert cert.meta["ranks"] == ranks[0].meta["ranks"]
    out = Path(ranks[0].meta["out"])
    assert load_certification(out).same_values(reference)
    assert reference.meta["ranks"][0]["chunk_ids"] == [1, 2, 0, 3]  # largest work first


def test_a_slow_rank_claims_fewer_chunks(two_processes, model, sentences):
    """Rank 1 sleeps SLOW s in each of its chunks, rank 0 certifies a chunk in a fraction of
    that: the queue gives rank 0 more chunks, each chunk to one rank only, and the result is
    the single-process one."""
    single = certify_dataset(model, sentences, RadiusSearch(**SEARCH), batch_size=1,
                             progress=False)  # fmt: skip
    for cert in two_processes["slow"]:
        assert cert.same_values(single)
        _check_queue(cert, len(sentences))
        fast, slow = cert.meta["ranks"]
        assert fast["chunks"] > slow["chunks"], cert.meta["ranks"]
        assert slow["busy"] >= SLOW * slow["chunks"]


def test_the_queue_hands_out_each_index_once():
    """Eight threads claiming from one real torch.distributed store at once: every index
    exactly once, then None for everyone; the finished count reaches n exactly."""
    import threading

    import torch.distributed as dist

    from toolkit.verify._certify_work import WorkQueue

    store, n = dist.HashStore(), 500
    queues = [WorkQueue(n, store, "q") for _ in range(8)]
    got: list[list[int]] = [[] for _ in queues]
    last: list[int] = []

    def claim(q, out):
        while (k := q.claim()) is not None:
            out.append(k)
            last.append(q.finish())

    threads = [threading.Thread(target=claim, args=(q, o)) for q, o in zip(queues, got)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(k for o in got for k in o) == list(range(n))
    assert max(last) == n and sorted(last) == list(range(1, n + 1))
    assert all(q.claim() is None for q in queues)
    queues[0].release()
    assert not store.check(["q/claimed"])
    local = WorkQueue(3)  # one process: no store
    assert [local.claim() for _ in range(4)] == [0, 1, 2, None]


@pytest.mark.slow
def test_three_gloo_processes_equal_one(tmp_path, model, sentences, reference):
    """Three ranks (one more than the chunks of any length): the same bits."""
    certs = _torchrun(tmp_path, model, sentences, 3, {"plain": (2, (), None)})["plain"]
    for cert in certs:
        assert cert.meta["world_size"] == 3 and cert.same_values(reference)
        np.testing.assert_array_equal(cert.values, reference.values)
        _check_queue(cert, reference.meta["chunks"])


def test_failed_shard_is_reported_then_resumed(two_processes, model, sentences, reference):
    """Two processes; every sentence of length 5 raises.  The others come back, the failure
    names the sentences and the error, nothing hangs; a resumed run fills exactly them."""
    ranks = two_processes["failing"]
    kwargs = dict(batch_size=2, progress=False, out=ranks[0].meta["out"])
    bad = [i for i, T in enumerate(LENGTHS) if T == 5]
    for cert in ranks:
        assert cert.failed_sentences == bad
        assert all("injected failure at length 5" in f.error for f in cert.failures)
        assert all("RuntimeError" in f.error and f.traceback for f in cert.failures)
        assert np.isnan(cert.values[bad]).all()
        good = [i for i in range(len(LENGTHS)) if i not in bad]
        np.testing.assert_array_equal(cert.values[good], reference.values[good])
    calls = []
    counting = _failing(model, [])
    counting.graph = lambda T: calls.append(T) or FailingClassifier.graph(counting, T)
    resumed = certify_dataset(counting, sentences, RadiusSearch(**SEARCH), resume=True, **kwargs)
    assert set(calls) == {5}  # only the failed chunks were recomputed
    assert resumed.same_values(reference) and resumed.failures == ()
    assert resumed.meta["resumed_chunks"] == resumed.meta["chunks"] - 1


def test_interrupted_run_resumes_to_the_same_result(tmp_path, model, sentences, reference):
    """Ctrl-C (KeyboardInterrupt) midway: the finished chunks stay on disk, whole; the
    restarted run skips them and ends with the uninterrupted run's result."""
    out = tmp_path / "cert.npz"
    seen = []

    class Interrupt(FailingClassifier):
        def graph(self, T):
            seen.append(T)
            if len(seen) > 2:  # two chunks in (one graph per chunk)
                raise KeyboardInterrupt
            return super().graph(T)

    m = Interrupt(**model.config)
    m.load_state_dict(model.state_dict())
    with pytest.raises(KeyboardInterrupt):
        certify_dataset(m.double(), sentences, RadiusSearch(**SEARCH), batch_size=2,
                        out=out, progress=False)  # fmt: skip
    parts = sorted((tmp_path / "cert.npz.parts").glob("chunk-*.json"))
    assert 0 < len(parts) < reference.meta["chunks"] and not out.exists()
    assert not list((tmp_path / "cert.npz.parts").glob(".*tmp*"))
    resumed = certify_dataset(
        model, sentences, RadiusSearch(**SEARCH), batch_size=2, out=out, resume=True,
        progress=False,
    )  # fmt: skip
    assert resumed.meta["resumed_chunks"] == len(parts)
    assert resumed.same_values(reference)
    np.testing.assert_array_equal(load_certification(out).values, reference.values)
    # a different run must not resume from these parts
    with pytest.raises(ValueError, match="different run"):
        certify_dataset(model, sentences, RadiusSearch(**SEARCH), batch_size=3, out=out,
                        resume=True, progress=False)  # fmt: skip


def test_fixed_ball_gives_margins(model, sentences):
    """A fixed LpBall: the worst-margin lower bound per position, as margin_bounds gives."""
    sub = sentences[:4]
    cert = certify_dataset(model, sub, LpBall(0.3, p="inf"), method="baf", progress=False)
    assert cert.kind == "margin" and cert.meta["eps"] == 0.3 and cert.meta["p"] == math.inf
    for i, s in enumerate(sub):
        e = model.embed(s).detach()
        y = int(model(e[None]).argmax())
        for t in range(len(s)):
            lo, _ = margin_bounds(model, e, LpBall(0.3, p="inf", positions=[t]), y, "baf")
            want = float(np.delete(lo.numpy(), y).min())
            assert cert.values[i, t] == pytest.approx(want, rel=1e-9, abs=1e-12)
            assert cert.certified[i, t] == (want > 0)


def test_positions_and_labels(model, sentences):
    sub = sentences[:3]  # lengths 3, 5, 4
    cert = certify_dataset(
        model, sub, {"tol": 0.05, "max_eps": 1.0}, positions=[4, 0], labels=[0, 1, 2],
        progress=False,
    )  # fmt: skip
    assert cert.labels.tolist() == [0, 1, 2] and cert.meta["positions"] == [0, 4]
    computed = ~np.isnan(cert.values)
    assert computed[:, 0].all() and computed[1, 4] and not computed[0, 4] and not computed[2, 4]
    assert computed.sum() == 4
    e = model.embed(sub[1]).detach()
    r = certified_radius(model, e, 1, [4], tol=0.05, max_eps=1.0)
    assert cert.values[1, 4] == float(r[0])


def test_load_rejects_other_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="path="):
        load_certification(tmp_path / "missing.npz")
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a certification result"):
        load_certification(tmp_path / "x.npz")
    with pytest.raises(TypeError, match="path must be"):
        load_certification(3)


@pytest.mark.parametrize(
    "kwargs,err,match",
    [
        (dict(sentences="abc"), TypeError, "sentences must be a sequence"),
        (dict(sentences=[]), ValueError, "sentences must hold at least one"),
        (dict(sentences=[[1, 2], [1.5]]), TypeError, r"sentences\[1\]"),
        (dict(sentences=[[1, 2], list(range(9))]), ValueError, r"sentences\[1\].*max_len=8"),
        (dict(sentences=[[1, 99]]), ValueError, r"sentences\[0\] must hold ids in \[0, 20\)"),
        (dict(spec=0.1), TypeError, "spec_or_radius_search must be an LpBall"),
        (dict(spec={"tol": 0.1, "eps": 1}), ValueError, "unknown keys"),
        (dict(spec={"tol": 2.0, "max_eps": 1.0}), ValueError, "tol must be smaller"),
        (dict(spec={"p": 3}), ValueError, "p must be 1, 2"),
        (dict(spec=LpBall(torch.tensor([0.1, 0.2]))), ValueError, "one radius"),
        (dict(method="nope"), ValueError, "method"),
        (dict(spec=RadiusSearch(method="ibp"), method="crown"), ValueError, "contradicts"),
        (dict(labels=[0]), ValueError, "labels must hold N=2"),
        (dict(labels=[]), TypeError, "labels must be an int"),
        (dict(labels=torch.zeros(0, dtype=torch.long)), ValueError, "got 0 entries"),
        (dict(labels=[0, 5]), ValueError, "labels must hold N=2"),
        (dict(positions=[-1]), ValueError, "positions"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(resume=True), ValueError, "resume=True needs out"),
        (dict(resume=1), TypeError, "resume must be a bool"),
        (dict(out=3), TypeError, "out must be a path"),
        (dict(timeout=0), ValueError, "timeout"),
        (dict(options={"bogus": 1}), ValueError, "options takes the keys"),
        (dict(options={"alpha_steps": -1}), ValueError, "alpha_steps"),
        (dict(device="tpu"), ValueError, "device"),
    ],
)
def test_bad_arguments(model, kwargs, err, match):
    args = dict(sentences=[[1, 2, 3], [4, 5]], spec=RadiusSearch(tol=0.1))
    args.update(kwargs)
    sentences, spec = args.pop("sentences"), args.pop("spec")
    with pytest.raises(err, match=match):
        certify_dataset(model, sentences, spec, progress=False, **args)


def test_synonyms_are_refused(model):
    from toolkit.verify import Synonyms

    with pytest.raises(TypeError, match="Synonyms"):
        certify_dataset(model, [[1, 2]], Synonyms({0: torch.zeros(2, 8)}), progress=False)


@pytest.mark.gpu
def test_cuda_run_matches_the_cpu_run(model, sentences, reference):
    """One process on the GPU: the same labels, radii within the bisection's resolution
    (float64 on both; a last-bit difference can move one bisection step)."""
    cert = certify_dataset(
        model, sentences, RadiusSearch(**SEARCH), batch_size=2, device="cuda", progress=False
    )
    assert cert.meta["device"] == "cuda" and cert.failures == ()
    np.testing.assert_array_equal(cert.labels, reference.labels)
    np.testing.assert_array_equal(np.isnan(cert.values), np.isnan(reference.values))
    np.testing.assert_allclose(cert.values, reference.values, atol=SEARCH["tol"], equal_nan=True)
    again = certify_dataset(
        model, sentences, RadiusSearch(**SEARCH), batch_size=2, device="cuda", progress=False
    )
    # a second run: the same up to the resolution (CUDA's atomic adds may reorder sums)
    np.testing.assert_allclose(again.values, cert.values, atol=SEARCH["tol"], equal_nan=True)


@pytest.mark.gpu
def test_two_gpus_over_nccl(tmp_path, model, sentences):
    """Two processes, one per GPU, in the NCCL group certify_dataset joins itself (the
    queue on torchrun's TCP store): the one-GPU run's labels and radii (to the bisection's
    resolution, as above), every chunk done once, and a slow rank 1 claims fewer."""
    if torch.cuda.device_count() < 2:
        pytest.skip(f"needs 2 GPUs, torch sees {torch.cuda.device_count()}")
    specs = {"plain": (2, (), None), "slow": (1, (), (1, SLOW))}
    runs = _torchrun(tmp_path, model, sentences, 2, specs, join=True)
    for name, bs in (("plain", 2), ("slow", 1)):
        one = certify_dataset(model, sentences, RadiusSearch(**SEARCH), batch_size=bs,
                              device="cuda", progress=False)  # fmt: skip
        for cert in runs[name]:
            assert cert.meta["device"] == "cuda" and cert.meta["world_size"] == 2
            np.testing.assert_array_equal(cert.labels, one.labels)
            np.testing.assert_allclose(cert.values, one.values, atol=SEARCH["tol"],
                                       equal_nan=True)  # fmt: skip
            _check_queue(cert, one.meta["chunks"])
    fast, slow = runs["slow"][0].meta["ranks"]
    assert fast["chunks"] > slow["chunks"], runs["slow"][0].meta["ranks"]


def _small_cert():
    from toolkit.verify import Certification

    values = np.array([[0.5, 0.25, np.nan], [0.75, 0.125, 1.0]])
    meta = {"method": "crown", "p": 2.0, "max_eps": 1.0, "world_size": 2, "seconds": 1.5}
    return Certification("radius", values, np.array([2, 3]), np.array([1, 0]), (), meta)


def test_report_part_plots_a_given_result(tmp_path, monkeypatch):
    pytest.importorskip("plotly")
    from toolkit.report import Table
    from toolkit.verify import report

    cert = _small_cert()
    monkeypatch.setenv(report.CERTIFICATION_ENV, str(cert.save(tmp_path / "c.npz")))
    given = report._given_certification()
    assert given is not None and given.same_values(cert)
    text, fig, table = report.certification_part(given)
    assert "TOOLKIT_CERTIFICATION" in text and "2 process(es)" in text
    assert list(fig.data[0].x) == [0, 0, 1, 1, 2]
    np.testing.assert_array_equal(np.asarray(fig.data[0].y), [0.5, 0.75, 0.25, 0.125, 1.0])
    assert isinstance(table, Table)
    rows = table.rows
    assert [r["sentences"] for r in rows] == [2, 2, 1]
    assert rows[0]["median"] == 0.625 and rows[1]["min"] == 0.125 and rows[2]["max"] == 1.0
    monkeypatch.delenv(report.CERTIFICATION_ENV)
    assert report._given_certification() is None


@pytest.mark.slow
def test_report_part_computes_a_small_result():
    """Quick mode without a given result: CROWN radii of the shipped model on three
    sentences, each equal to certified_radius's (about 10 s of CPU)."""
    pytest.importorskip("plotly")
    from toolkit.verify import load_default_model, make_dataset, report

    _, fig, _ = report.certification_part(None, quick=True)
    n, (shortest, longest), tol = report.CERTIFY_SIZES[True]
    model, _ = load_default_model()
    ids, lens, labels = make_dataset(n, seed=0, min_len=shortest, max_len=longest)
    want = [
        certified_radius(model, model.embed(ids[i, : lens[i]]).detach(), int(labels[i]),
                         list(range(int(lens[i]))), tol=tol, max_eps=1.0).numpy()
        for i in range(n)
    ]  # fmt: skip
    order = np.argsort(np.concatenate([np.arange(len(w)) for w in want]), kind="stable")
    got = np.asarray(fig.data[0].y)
    np.testing.assert_allclose(got, np.concatenate(want)[order], atol=tol)


def test_shards_are_balanced_and_deterministic():
    """Every item on exactly one rank; the busiest rank within Graham's 4/3 of the optimum
    (brute force over all assignments); the same answer every time."""
    import itertools

    from toolkit.verify.certify import shard_chunks

    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        n, world = (
            int(torch.randint(1, 8, (1,), generator=g)),
            int(torch.randint(1, 4, (1,), generator=g)),
        )
        costs = torch.randint(1, 50, (n,), generator=g).tolist()
        shards = shard_chunks(costs, world)
        assert shards == shard_chunks(costs, world) and len(shards) == world
        assert sorted(i for s in shards for i in s) == list(range(n))
        assert all(s == sorted(s) for s in shards)
        best = min(
            max(sum(c for c, r in zip(costs, who) if r == k) for k in range(world))
            for who in itertools.product(range(world), repeat=n)
        )
        assert max(sum(costs[i] for i in s) for s in shards) <= 4 / 3 * best + 1e-9


@pytest.mark.slow
def test_a_crashed_rank_does_not_hang_the_other(tmp_path, model, sentences, reference):
    """Two gloo processes started by hand (no torchrun to stop the survivor); the rank that
    claims the length-2 sentence (the last chunk in the queue's order) dies at once.  The
    other one does not wait forever in the work queue (rank 0 hosts the store) or the result
    exchange: it fails within the timeout, saying so and pointing at resume, and a resumed
    run from the parts gives the full result."""
    import socket

    out = tmp_path / "cert.npz"
    kwargs = dict(batch_size=2, progress=False, out=str(out), timeout=30.0)
    job = _job(tmp_path / "job.pt", model, sentences, kwargs, exit_lengths=(2,))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for r in range(2):
        env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", RANK=str(r))
        env.update(LOCAL_RANK=str(r), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1")
        env.update(MASTER_PORT=str(port))
        cmd = [sys.executable, str(RUNNER), "--join", str(job)]
        procs.append(subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True))
    codes, errs = [], []
    for p in procs:
        _, err = p.communicate(timeout=150)
        codes.append(p.returncode)
        errs.append(err)
    assert sorted(codes) == [1, 3], (codes, errs)
    survivor = errs[codes.index(1)]
    assert "resume=True" in survivor
    assert "the result exchange failed" in survivor or "the work queue failed" in survivor
    assert not out.exists()
    resumed = certify_dataset(
        model, sentences, RadiusSearch(**SEARCH), resume=True, **{**kwargs, "timeout": 60.0}
    )
    assert 0 < resumed.meta["resumed_chunks"] < resumed.meta["chunks"]
    assert resumed.same_values(reference)
