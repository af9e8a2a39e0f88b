"""`lit-align export` of online checkpoints: RLGAF's exported folder holds the policy and the discriminator the
checkpoint trained (discriminator/, a sequence classifier that plain transformers loads and that scores as in the
checkpoint), not a fresh one."""
import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from lit_align.data.jsonl import read_rows
from lit_align.export import export_checkpoint
from lit_align.modules import RLGAFModule
from lit_align.rollout.reward import reward_scores
from tests.modules.test_online import make


def test_rlgaf_export_carries_the_trained_discriminator(suite, tmp_path):
    module, dm = make(RLGAFModule, suite, expert_file=suite.file("expert.jsonl"), disc_warmup_steps=2,
                      disc_batch_size=4, update_epochs=1, disc_lr=1e-2)
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0,
                         callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)])
    trainer.fit(module, dm)
    assert module.game.total_steps >= 2  # D trained: its weights differ from the checkpoint it started from

    paths = export_checkpoint(str(tmp_path / "ckpt"), str(tmp_path / "out"))
    assert str(tmp_path / "out" / "discriminator") in paths
    AutoModelForCausalLM.from_pretrained(tmp_path / "out")  # the policy loads too
    exported = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out" / "discriminator").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out" / "discriminator")

    rows = read_rows(suite.file("expert.jsonl"), "sft")[:6]
    prompts, responses = [r["prompt"] for r in rows], [r["completion"] for r in rows]
    trained = module.game.model.eval()
    expected = reward_scores(trained, module.game.tokenizer, prompts, responses, encoder=module.game.encoder)
    got = reward_scores(exported, tokenizer, prompts, responses, encoder=module.game.encoder)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    fresh = AutoModelForSequenceClassification.from_pretrained(suite.model, num_labels=1,
                                                               pad_token_id=tokenizer.pad_token_id).eval()
    untrained = reward_scores(fresh, tokenizer, prompts, responses, encoder=module.game.encoder)
    assert (untrained - expected).abs().max() > 1e-3, "the exported D must be the trained one, not a fresh head"
