"""DataLoader: the same order everywhere, rank slices, epochs, resume, prefetch, batch_hash."""

import numpy as np
import pytest
import torch

from olmo.data.dataset import TokenDataset
from olmo.data.loader import DataLoader, batch_hash, global_order
from olmo.data.prepare import write_token_dir
from olmo.errors import OlmoError
from olmo.tokenizer import load_tokenizer

SEQ = 16


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    tok = load_tokenizer()
    path = tmp_path_factory.mktemp("data") / "d"
    stream = np.random.default_rng(0).integers(0, tok.vocab_size, 100 * SEQ + 5)
    write_token_dir([stream], path, tok, shard_tokens=250)
    return TokenDataset([path], SEQ, tok)  # 100 instances


def test_global_order_is_pinned():
    # Pinned: a change here silently changes the data order of every run.
    assert global_order(10, 0, 0).tolist() == [4, 6, 2, 7, 3, 5, 9, 0, 8, 1]
    assert global_order(10, 0, 1).tolist() == [9, 1, 3, 8, 7, 6, 0, 4, 2, 5]
    assert global_order(10, 1, 0).tolist() == [8, 4, 7, 0, 1, 2, 5, 9, 6, 3]


def test_batch_hash():
    assert batch_hash(np.arange(4)) == "a1e03200f1f82ad2"
    assert batch_hash(np.arange(4, dtype=np.int32)) == batch_hash([0, 1, 2, 3])
    assert batch_hash(np.array([1, 0, 2, 3])) != batch_hash(np.arange(4))


def test_same_order_for_independent_loaders(ds):
    a, b = DataLoader(ds, 8, seed=7), DataLoader(ds, 8, seed=7)
    other = DataLoader(ds, 8, seed=8)
    for step in (0, 1, 11, 12, 30):
        np.testing.assert_array_equal(a.global_indices(step), b.global_indices(step))
        assert torch.equal(a.batch(step), b.batch(step))
    assert not np.array_equal(a.global_indices(0), other.global_indices(0))


def test_rank_slices_union_is_the_global_batch(ds):
    one = DataLoader(ds, 8, seed=3)
    ranks = [DataLoader(ds, 8, seed=3, rank=r, world_size=2) for r in (0, 1)]
    for step in (0, 5, 13):
        local = [r.local_indices(step) for r in ranks]
        assert [len(x) for x in local] == [4, 4]
        np.testing.assert_array_equal(np.concatenate(local), one.global_indices(step))
        tokens = torch.cat([r.batch(step) for r in ranks])
        assert tokens.dtype == torch.int64 and tokens.shape == (8, SEQ)
        assert torch.equal(tokens, one.batch(step))
        assert torch.equal(tokens[1], torch.from_numpy(ds[int(one.global_indices(step)[1])]))


def test_epochs(ds):
    loader = DataLoader(ds, 8, seed=1)
    assert loader.steps_per_epoch == 12  # 100 // 8, last partial batch dropped
    epoch0 = np.concatenate([loader.global_indices(s) for s in range(12)])
    epoch1 = np.concatenate([loader.global_indices(s) for s in range(12, 24)])
    assert len(set(epoch0.tolist())) == 96 and len(set(epoch1.tolist())) == 96
    np.testing.assert_array_equal(epoch0, global_order(100, 1, 0)[:96])
    np.testing.assert_array_equal(epoch1, global_order(100, 1, 1)[:96])
    assert not np.array_equal(epoch0, epoch1)
    np.testing.assert_array_equal(loader.global_indices(3), loader.global_indices(3))
    assert loader.epoch_of(11) == 0 and loader.epoch_of(12) == 1


def test_state_dict_round_trip_resumes_at_same_batch(ds):
    a = DataLoader(ds, 8, seed=5)
    it = iter(a)
    seen = [next(it) for _ in range(14)]  # crosses into epoch 1
    assert [p.step for p, _ in seen] == list(range(14))
    # Epoch 0 holds 12 whole batches (positions 0..95); batch 12 starts epoch 1 at position 100.
    assert [p.position for p, _ in seen[11:]] == [88, 100, 108]
    state = a.state_dict()
    assert state == {
        "seed": 5,
        "epoch": 1,
        "position": 116,
        "instances_consumed": 112,
        "steps_consumed": 14,
        "global_batch_size": 8,
        "num_instances": 100,
        "skips": [],
    }
    b = DataLoader(ds, 8, seed=5)
    b.load_state_dict(state)
    plan, batch = next(iter(b))
    expected_plan, expected = next(it)
    assert plan == expected_plan and plan.step == 14 and torch.equal(batch, expected)
    with pytest.raises(OlmoError, match=r"seed=5 but this run has 6.*train\.seed"):
        DataLoader(ds, 8, seed=6).load_state_dict(state)


def test_old_checkpoint_without_position_resumes_at_step_times_batch(ds):
    new = DataLoader(ds, 8, seed=5)
    it = iter(new)
    for _ in range(14):
        next(it)
    old_state = {"seed": 5, "steps_consumed": 14, "global_batch_size": 8, "num_instances": 100}
    old = DataLoader(ds, 8, seed=5)
    old.load_state_dict(old_state)
    assert (old.position, old.instances_consumed) == (new.position, new.instances_consumed)
    assert torch.equal(next(iter(old))[1], next(it)[1])


def test_prefetch_workers_give_identical_batches(ds):
    plain = DataLoader(ds, 8, seed=2, rank=1, world_size=2)
    fetched = DataLoader(ds, 8, seed=2, rank=1, world_size=2, num_workers=2, prefetch=3)
    fetched.load_state_dict({"seed": 2, "global_batch_size": 8, "steps_consumed": 4})
    got = []
    for plan, batch in fetched:
        got.append((plan.step, batch))
        if plan.step == 30:
            break
    assert [s for s, _ in got] == list(range(4, 31)) and fetched.steps_consumed == 31
    for step, batch in got:
        assert torch.equal(batch, plain.batch(step))


def test_bad_sizes(ds):
    with pytest.raises(OlmoError, match=r"global_batch_size=6 is not divisible by the 4 ranks"):
        DataLoader(ds, 6, seed=0, world_size=4)
    with pytest.raises(
        OlmoError, match=r"100 instances .* fewer than train\.global_batch_size=128"
    ):
        DataLoader(ds, 128, seed=0)
    with pytest.raises(OlmoError, match=r"rank 2 / world size 2"):
        DataLoader(ds, 8, seed=0, rank=2, world_size=2)


@pytest.mark.parametrize("workers", [0, 2])
def test_skip_moves_the_position_mid_iteration_and_is_checkpointed(ds, workers):
    loader = DataLoader(ds, 8, seed=4, num_workers=workers, prefetch=3)
    it = iter(loader)
    first, _ = next(it)
    loader.skip(20)  # the prefetched batches after it are stale now
    plan, batch = next(it)
    assert (plan.step, plan.position) == (1, 8 + 20)
    expected = global_order(100, 4, 0)[28:36]
    np.testing.assert_array_equal(loader.indices(plan), expected)
    assert torch.equal(batch, torch.from_numpy(ds.get_batch(expected)))
    loader.skip_to(95)  # 95 + 8 > 100: the next batch starts epoch 1
    plan, _ = next(it)
    assert plan.position == 100 and loader.epoch_of(0) == 0
    state = loader.state_dict()
    assert state["skips"] == [[1, 8, 20], [2, 36, 59]] and state["position"] == 108
    assert state["instances_consumed"] == 24  # skipped data is not trained on
    again = DataLoader(ds, 8, seed=4)
    again.load_state_dict(state)
    assert next(iter(again))[0].position == 108 and again.skips == state["skips"]
    with pytest.raises(ValueError, match="behind the current position"):
        loader.skip_to(3)
