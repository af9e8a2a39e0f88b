"""reference='precomputed': the initial policy's scores of every train/val pair, filled once before the first update.

They equal the frozen copy's scores; a resumed fit reuses the file (and refuses to score with the trained policy);
two DDP processes each score a shard and both end with every pair, through shuffled epochs; changed tokens
(max_length) or a changed model are recomputed, never reused; a pair outside the cache raises."""
import os
import shutil

import lightning.pytorch as pl
import pytest
import torch
from transformers import AutoModelForCausalLM

from lit_align.data.datamodule import PreferenceDataModule
from lit_align.errors import UserError
from lit_align.models.reference import CacheMiss, FrozenCopyReference, pair_keys
from lit_align.modules import DPOModule
from tests.test_ddp import run_fit


class RecordCache(pl.Callback):
    """Saves each rank's reference cache and its `computed` count (for the DDP test's subprocess)."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir

    def on_fit_end(self, trainer, pl_module):
        ref = pl_module.reference
        torch.save({"cache": ref.cache, "computed": ref.computed},
                   os.path.join(self.out_dir, f"cache{trainer.global_rank}.pt"))


@pytest.fixture(scope="module")
def files(suite, tmp_path_factory):
    """preference.jsonl split into 40 train and 8 val pairs."""
    root = tmp_path_factory.mktemp("pref")
    lines = open(suite.file("preference.jsonl")).read().splitlines()
    (root / "train.jsonl").write_text("\n".join(lines[:40]) + "\n")
    (root / "val.jsonl").write_text("\n".join(lines[40:]) + "\n")
    return str(root / "train.jsonl"), str(root / "val.jsonl")


def data(suite, files, max_length=96, shuffle=False, batch_size=8):
    dm = PreferenceDataModule(files[0], str(suite.model), val_file=files[1], batch_size=batch_size,
                              max_length=max_length, shuffle=shuffle)
    dm.setup("fit")
    return dm


def shorter(suite, files):
    """The data again with max_length at the 75th percentile of the pairs' longer side: the longest quarter of the
    pairs lose completion tokens (or drop), which changes their token ids."""
    full = data(suite, files)
    longest = sorted(max(len(ex["chosen_input_ids"]), len(ex["rejected_input_ids"]))
                     for split in ("train", "val") for ex in full.datasets[split])
    return data(suite, files, max_length=longest[3 * len(longest) // 4])


def batches(dm):
    return [*dm._loader("train"), *dm._loader("val")]  # unshuffled


def trainer(root, max_steps, **kwargs):
    return pl.Trainer(max_steps=max_steps, accelerator="cpu", default_root_dir=str(root), logger=False,
                      enable_progress_bar=False, enable_model_summary=False, **kwargs)


def frozen_scores(suite, dm, average=False):
    """{pair key: (chosen, rejected)} of a frozen copy of the initial model: the single-process truth."""
    copy = DPOModule(str(suite.model), reference="copy")
    copy.configure_model()
    ref = FrozenCopyReference(copy.model, average)
    out = {}
    for batch in batches(dm):
        values, b = ref.scores(None, batch), len(batch["ids"])
        out.update((k, (float(values[i]), float(values[b + i]))) for i, k in enumerate(pair_keys(batch)))
    return out


def assert_scores_close(cache, truth):
    keys = sorted(truth)
    torch.testing.assert_close(torch.tensor([cache[k] for k in keys]), torch.tensor([truth[k] for k in keys]),
                               atol=1e-5, rtol=1e-5)


def test_cache_equals_the_frozen_copy(suite, files, tmp_path):
    dm = data(suite, files)
    module = DPOModule(str(suite.model), beta=0.5, reference="precomputed", lr=1e-2, warmup_ratio=0.0)
    trainer(tmp_path, 2, enable_checkpointing=False).fit(module, dm)
    assert (tmp_path / "reference_logps.pt").exists(), "the cache belongs in the run folder (default_root_dir)"
    truth = frozen_scores(suite, dm)
    assert len(truth) == 48 and module.reference.computed == 48
    assert set(module.reference.cache) == set(truth)
    assert_scores_close(module.reference.cache, truth)
    # The policy has moved: were the trained policy the reference, the scores would differ from the truth.
    batch = next(iter(dm._loader("train")))
    module.reference.average_log_prob = True
    copy = FrozenCopyReference(DPOModule(str(suite.model)).load_model(), average_log_prob=True)
    torch.testing.assert_close(module.reference.scores(None, batch), copy.scores(None, batch), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(module.reference.scores(None, batch),
                              FrozenCopyReference(module.model, True).scores(None, batch), atol=1e-3)


def test_resume_reuses_the_file_and_never_scores_with_the_trained_policy(suite, files, tmp_path):
    dm = data(suite, files)
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True)
    first = DPOModule(str(suite.model), beta=0.5, reference="precomputed", lr=1e-2, warmup_ratio=0.0)
    trainer(tmp_path, 2, callbacks=[ckpt]).fit(first, dm)
    path, last = tmp_path / "reference_logps.pt", str(tmp_path / "checkpoints" / "last.ckpt")
    stored = path.read_bytes()

    resumed = DPOModule(str(suite.model), beta=0.5, reference="precomputed", lr=1e-2, warmup_ratio=0.0)
    run = trainer(tmp_path, 4, enable_checkpointing=False)
    run.fit(resumed, dm, ckpt_path=last)
    assert run.global_step == 4 and resumed.reference.computed == 0
    assert resumed.reference.cache == first.reference.cache and path.read_bytes() == stored

    # A file that lacks pairs cannot be completed by a trained policy: a clear error, not a wrong reference.
    data_ = torch.load(path, weights_only=True)
    torch.save({**data_, "keys": data_["keys"][3:], "scores": data_["scores"][3:]}, path)
    again = DPOModule(str(suite.model), beta=0.5, reference="precomputed")
    with pytest.raises(UserError, match="3 pairs .*restored from a checkpoint"):
        trainer(tmp_path, 6, enable_checkpointing=False).fit(again, dm, ckpt_path=last)

    # The same partial file in a fresh run (the policy is still the initial one): only the missing pairs are scored.
    fresh = DPOModule(str(suite.model), beta=0.5, reference="precomputed", reference_cache=str(path))
    fresh.configure_model()
    with pytest.warns(UserWarning, match="3 pairs have no reference score"):
        assert fresh.precompute_reference(dm) == 3
    assert_scores_close(fresh.reference.cache, first.reference.cache)


def test_ddp_two_processes_every_rank_holds_every_pair(suite, files, tmp_path):
    out = tmp_path / "ddp"
    run_fit("configs/dpo.yaml", suite, out, "--data.init_args.train_file", files[0], "--data.init_args.val_file",
            files[1], "--data.init_args.shuffle", "true", "--data.init_args.batch_size", "4",
            "--data.init_args.max_length", "96",
            "--model.init_args.reference", "precomputed", "--trainer.max_epochs", "2", "--trainer.strategy", "ddp",
            "--trainer.devices", "2", "--trainer.accelerator", "cpu",
            "--trainer.callbacks+=tests.modules.test_reference_cache.RecordCache", f"--trainer.callbacks.out_dir={out}")
    caches = [torch.load(out / f"cache{r}.pt") for r in (0, 1)]
    steps = torch.load(out / "rank0.pt")["ids"]
    assert len(steps) == 10, "2 epochs of 5 steps (20 pairs per rank, 4 per step)"
    epochs = [{i for ids in steps[:5] for i in ids}, {i for ids in steps[5:] for i in ids}]
    assert epochs[0] != epochs[1], "the sampler should give rank 0 other pairs in epoch 2"
    truth = frozen_scores(suite, data(suite, files))
    for cache in caches:
        assert cache["computed"] == 48 and set(cache["cache"]) == set(truth)
        assert_scores_close(cache["cache"], truth)
    stored = torch.load(out / "reference_logps.pt", weights_only=True)
    assert sorted(stored["keys"]) == sorted(truth)


def test_changed_tokens_or_model_are_recomputed(suite, files, tmp_path):
    cache = str(tmp_path / "ref.pt")
    first = DPOModule(str(suite.model), reference="precomputed", reference_cache=cache)
    first.configure_model()
    assert first.precompute_reference(data(suite, files)) == 48
    short = shorter(suite, files)
    short_keys = {k for batch in batches(short) for k in pair_keys(batch)}  # some pairs drop when cut
    changed = len(short_keys - set(first.reference.cache))
    assert changed >= 3, "the shorter max_length should change the tokens of several pairs"
    again = DPOModule(str(suite.model), reference="precomputed", reference_cache=cache)
    again.configure_model()
    with pytest.warns(UserWarning, match=f"{changed} pairs have no reference score"):
        assert again.precompute_reference(short) == changed
    assert_scores_close(again.reference.cache, frozen_scores(suite, short))

    other = tmp_path / "other"  # the same architecture with other weights, under another path
    shutil.copytree(suite.model, other)
    model = AutoModelForCausalLM.from_pretrained(other)
    with torch.no_grad():
        model.lm_head.weight.mul_(1.5)
    model.save_pretrained(other)
    third = DPOModule(str(other), reference="precomputed", reference_cache=cache)
    third.configure_model()
    with pytest.warns(UserWarning, match="recomputing them all"):
        assert third.precompute_reference(short) == len(short_keys)


def test_a_miss_after_filling_raises(suite, files, tmp_path):
    module = DPOModule(str(suite.model), reference="precomputed", reference_cache=str(tmp_path / "ref.pt"))
    module.configure_model()
    module.precompute_reference(data(suite, files))
    for batch in batches(shorter(suite, files)):  # the first batch with a pair whose tokens the cut changed
        cut = [i for i, k in zip(batch["ids"], pair_keys(batch), strict=True) if k not in module.reference.cache]
        if cut:
            break
    with pytest.raises(CacheMiss, match=f"no reference score for pair.*'{cut[0]}'"):
        module.step(batch, "")
