import pickle

import numpy as np
import pytest
import torch

from framegan.data import ClipDataset, make_loader
from framegan.frames import to_model
from framegan.store import StoreError, StoreWriter


def tagged(seg, n, h=8, w=10):
    """Frames that say where they come from: channel 0 = segment, channel 1 = frame index,
    channel 2 = a left-to-right ramp (so a horizontal flip is visible)."""
    out = np.zeros((n, h, w, 3), np.uint8)
    out[..., 0], out[..., 1] = seg, np.arange(n)[:, None, None]
    out[..., 2] = np.arange(w) * 20
    return out


def origin(window: torch.Tensor):
    """(segment, frame index) of every frame in a (T, C, H, W) window."""
    pixels = np.round((window[:, :2, 0, 0].numpy() + 1) * 127.5).astype(int)
    return [tuple(p) for p in pixels]


def test_windows_never_cross_segments(make_store):
    lengths = [7, 3, 12, 5]
    ds = ClipDataset(make_store([tagged(s, n) for s, n in enumerate(lengths)]), context=4, horizon=1,
                     split="all")
    assert len(ds) == sum(max(0, n - 4) for n in lengths) == 3 + 0 + 8 + 1
    for i, (seg, start) in enumerate(ds.windows):
        assert origin(ds[i][0]) == [(seg, start + k) for k in range(5)]
        assert start + 5 <= lengths[seg]


def test_horizon_and_stride(make_store):
    ds = ClipDataset(make_store([tagged(0, 20)]), context=3, horizon=2, stride=4, split="all")
    assert ds.windows == [(0, 0), (0, 4), (0, 8), (0, 12)]
    assert ds[3][0].shape == (5, 3, 8, 10)


def test_items_are_model_floats_and_batches_match(make_store):
    seg = np.random.default_rng(0).integers(0, 256, (9, 8, 10, 3), dtype=np.uint8)
    ds = ClipDataset(make_store([seg]), context=4, split="all")
    item, actions = ds[2]
    assert item.dtype == torch.float32 and item.shape == (5, 3, 8, 10)
    assert torch.equal(item, to_model(seg[2:7]))
    assert -1 <= item.min() and item.max() <= 1
    assert actions.dtype == torch.int64 and actions.tolist() == [-1] * 5 and ds.num_actions == 0
    batch, batch_actions = ds[[0, 2, 4]]
    assert batch.shape == (3, 5, 3, 8, 10) and torch.equal(batch[1], item)
    assert batch_actions.shape == (3, 5) and (batch_actions == -1).all()


def test_split_by_whole_segments_is_deterministic_and_disjoint(make_store):
    path = make_store([tagged(s, 8) for s in range(30)])
    train = ClipDataset(path, context=4, split="train", val_fraction=0.2)
    val = ClipDataset(path, context=4, split="val", val_fraction=0.2)
    train_segs, val_segs = {s for s, _ in train.windows}, {s for s, _ in val.windows}
    assert train_segs and val_segs and not train_segs & val_segs
    assert train_segs | val_segs == set(range(30))
    assert ClipDataset(path, context=4, split="val", val_fraction=0.2).windows == val.windows
    assert len(train) + len(val) == len(ClipDataset(path, context=4, split="all"))


def test_few_segments_split_by_their_tails(make_store):
    path = make_store([tagged(0, 40), tagged(1, 30), tagged(2, 12)])
    train = ClipDataset(path, context=4, split="train", val_fraction=0.25)
    val = ClipDataset(path, context=4, split="val", val_fraction=0.25)
    assert {s for s, _ in val.windows} == {0, 1}  # 12 frames cannot spare a tail of MIN_VAL_TAIL
    assert min(start for seg, start in val.windows if seg == 0) == 30  # last 10 of 40 frames
    assert max(start for seg, start in train.windows if seg == 0) == 25
    assert min(start for seg, start in val.windows if seg == 1) == 22  # MIN_VAL_TAIL = 8 > 30 / 4
    assert max(start for seg, start in train.windows if seg == 2) == 7


def window_frames(ds):
    return {(seg, start + k) for seg, start in ds.windows for k in range(ds.length)}


@pytest.mark.parametrize("lengths", [[300, 60, 30], [12] * 30 + [80]], ids=["tails", "whole-segments"])
def test_no_validation_frame_is_in_a_training_window_for_any_horizon(make_store, lengths):
    """Train with one horizon, evaluate with another: the split must not move. (It used to:
    the tail was max(window, len * val_fraction) frames, so a horizon-16 validation window
    began inside the frames a horizon-1 training window covered.)"""
    path = make_store([tagged(s % 256, n) for s, n in enumerate(lengths)])
    horizons = (1, 4, 16)
    train = {h: window_frames(ClipDataset(path, context=4, horizon=h, split="train", val_fraction=0.1))
             for h in horizons}
    val = {}
    for h in horizons:
        try:
            val[h] = window_frames(ClipDataset(path, context=4, horizon=h, split="val", val_fraction=0.1))
        except StoreError:  # no validation window this long: nothing to leak
            val[h] = set()
    for h_train in horizons:
        for h_val in horizons:
            assert not train[h_train] & val[h_val], (h_train, h_val)
    assert val[1] and val[4]
    if lengths[0] == 300:
        assert val[16]  # a 30-frame tail holds a 20-frame window
    # the split itself is the same frame set for every horizon: validation frames of a short
    # window are frames of the split's validation ranges, never of training's
    assert val[16] <= val[4] <= val[1]


def test_augment_flips_whole_windows_horizontally(make_store):
    ds = ClipDataset(make_store([tagged(0, 6)]), context=4, split="all", augment=True)
    plain = ClipDataset(ds.store, context=4, split="all")[0][0]
    torch.manual_seed(0)
    seen = set()
    for _ in range(20):
        item = ds[0][0]
        flipped = torch.equal(item, plain.flip(-1))
        assert flipped or torch.equal(item, plain)
        seen.add(flipped)
    assert seen == {True, False}
    assert not ClipDataset(ds.store, context=4, split="all").augment  # off by default


def test_no_window_fits_is_a_one_line_error(make_store):
    path = make_store([tagged(0, 4), tagged(1, 3)])
    with pytest.raises(StoreError, match="no train window of 5 frames .* longest 4 frames"):
        ClipDataset(path, context=4)
    with pytest.raises(StoreError, match="no val window"):
        ClipDataset(make_store([tagged(0, 20)], name="s2"), context=4, split="val", val_fraction=0)


def test_make_loader_batches_and_pickles_lightly(make_store):
    ds = ClipDataset(make_store([tagged(0, 30), tagged(1, 30)]), context=4, split="all")
    batches = list(make_loader(ds, batch_size=8, seed=1))
    assert len(batches) == len(ds) // 8 and batches[0][0].shape == (8, 5, 3, 8, 10)
    assert batches[0][1].shape == (8, 5)
    again = list(make_loader(ds, batch_size=8, seed=1))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))
    assert len(pickle.dumps(ds)) < 10_000  # workers get the store path, not the frames


def action_store(path, segments, names=None):
    """A store of ``tagged`` segments with raw action ids: ``segments`` = [ids per frame, ...]."""
    with StoreWriter(path, size=(8, 10), fps=10, actions=True) as w:
        w.name_actions(names or {})
        for k, ids in enumerate(segments):
            for i, (frame, a) in enumerate(zip(tagged(k, len(ids)), ids)):
                w.add(frame, source=f"clip{k}.mp4", index=i, action=a)
            w.cut()
    return path


def test_windows_carry_the_index_of_each_frames_action(tmp_path):
    ids = [[12, 0, 0, 3, 12, 7], [7, 7, 3, 0, 0]]
    ds = ClipDataset(action_store(tmp_path / "s", ids), context=3, horizon=2, split="all")
    assert ds.store.action_values == [0, 3, 7, 12] and ds.num_actions == 4
    assert len(ds) == 3
    for i, (seg, start) in enumerate(ds.windows):
        frames, actions = ds[i]
        assert origin(frames) == [(seg, start + k) for k in range(5)]  # actions line up with frames
        assert actions.tolist() == [[0, 3, 7, 12].index(a) for a in ids[seg][start:start + 5]]
    frames, actions = ds[[2, 0]]
    assert frames.shape == (2, 5, 3, 8, 10) and actions.tolist() == [[2, 2, 1, 0, 0], [3, 0, 0, 1, 3]]
    loader = make_loader(ds, batch_size=2, seed=0)
    assert all(a.shape == (2, 5) and a.dtype == torch.int64 for _, a in loader)


def test_augment_is_refused_with_actions(tmp_path):
    path = action_store(tmp_path / "s", [[1, 2, 1, 2, 1, 2]])
    with pytest.raises(StoreError, match="has actions, and a horizontal flip would swap"):
        ClipDataset(path, context=4, split="all", augment=True)


def test_key_change_repeat_lists_the_windows_whose_keys_change(tmp_path):
    """G's keys for a window of context 4 with a history of 2 are the two pressed after context
    frames 3 and 4; a window counts as a change when they are not both the key before them."""
    ids = [[0, 0, 0, 0, 0, 0, 5, 5, 5, 5], [1] * 6]
    path = action_store(tmp_path / "s", ids)
    plain = ClipDataset(path, context=4, split="all")
    boosted = ClipDataset(path, context=4, split="all", key_change_repeat=3, key_history=2)
    counts = {w: boosted.windows.count(w) for w in plain.windows}
    # window (0, s) reads the keys after frames s+1 (the one before), s+2 and s+3; the 5 first
    # follows frame 6, so windows 3 and 4 see it change and window 5 sees it held
    assert counts == {**{(0, s): 1 for s in range(6)}, (0, 3): 3, (0, 4): 3, (1, 0): 1, (1, 1): 1}
    one_key = ClipDataset(path, context=4, split="all", key_change_repeat=3, key_history=1)
    assert sorted({w: one_key.windows.count(w) for w in plain.windows}.items()) == sorted(
        {**counts, (0, 4): 1}.items())  # one key seen: after frames s+2 (before) and s+3
    assert ClipDataset(path, context=4, split="all", key_change_repeat=1).windows == plain.windows
