"""DPOModule: the loss against a by-hand computation from the model's own logits, every reference kind."""
import math

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F

from lit_align.data.datamodule import PreferenceDataModule
from lit_align.modules import DPOModule


def one_batch(suite, batch_size=4):
    dm = PreferenceDataModule(suite.file("preference.jsonl"), str(suite.model), batch_size=batch_size,
                              max_length=96, shuffle=False)
    dm.setup("fit")
    return dm, next(iter(dm.train_dataloader()))


def logprobs_by_hand(model, batch):
    """Sum over completion tokens of log_softmax(logits)[next token], from the model's full logits."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].double()
    labels = batch["labels"][:, 1:]
    mask = labels != -100
    picked = logits.log_softmax(-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(-1)


def perturb(model, seed=1, scale=0.05):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)


@pytest.mark.parametrize("loss_type,head_strategy", [("sigmoid", "recompute"), ("ipo", "recompute"),
                                                    ("hinge", "recompute"), ("sigmoid", "chunked")])
def test_loss_matches_hand_computation(suite, loss_type, head_strategy):
    """The loss (with RPO's term), the nll and the logps/* metrics against the model's own logits."""
    dm, batch = one_batch(suite)
    module = DPOModule(str(suite.model), loss_type=loss_type, beta=0.3, rpo_alpha=0.5, head_strategy=head_strategy)
    module.configure_model()
    perturb(module.model)  # policy != reference
    policy, ref = logprobs_by_hand(module.model, batch), logprobs_by_hand(module.reference.model, batch)
    counts = (batch["labels"][:, 1:] != -100).sum(-1).double()  # (2B,)
    b = len(batch["ids"])
    nll = (-policy[:b] / counts[:b]).mean()
    sums = policy
    if loss_type == "ipo":  # length-normalised, as in the IPO paper
        policy, ref = policy / counts, ref / counts
    margin = (policy[:b] - ref[:b]) - (policy[b:] - ref[b:])
    expected = {"sigmoid": -F.logsigmoid(0.3 * margin), "hinge": torch.relu(1 - 0.3 * margin),
                "ipo": (margin - 1 / 0.6) ** 2}[loss_type].mean()
    loss = module.step(batch, "")
    torch.testing.assert_close(loss.double(), expected + 0.5 * nll, atol=1e-4, rtol=1e-4)
    means = module.train_metrics.means  # logps/* log the sums, whatever the loss normalises
    assert float(means["logps__chosen"].compute()) == pytest.approx(float(sums[:b].mean()), rel=1e-5)
    assert float(means["logps__rejected"].compute()) == pytest.approx(float(sums[b:].mean()), rel=1e-5)
    loss.backward()  # the RPO term reaches the policy
    assert module.model.get_output_embeddings().weight.grad.abs().sum() > 0


def test_rpo_term_is_the_chosen_nll(suite):
    """rpo_alpha adds exactly alpha * (per-token NLL of the chosen answer) to the same batch's loss."""
    _, batch = one_batch(suite)
    losses = {}
    for alpha in (0.0, 2.0):
        module = DPOModule(str(suite.model), beta=0.3, rpo_alpha=alpha)
        module.configure_model()
        perturb(module.model)
        losses[alpha] = module.step(batch, "").double()
    b = len(batch["ids"])
    counts = (batch["labels"][:b, 1:] != -100).sum(-1).double()
    nll = (-logprobs_by_hand(module.model, batch)[:b] / counts).mean()
    torch.testing.assert_close(losses[2.0] - losses[0.0], 2.0 * nll, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("head_strategy", ["recompute", "chunked"])
def test_batch_invariant_pair_logprobs(suite, head_strategy):
    """batch_invariant=True: a pair's log-probs, rewards and loss from the module's fused path are bitwise the same
    scored alone as in a batch of other pairs (given its hidden states; the decoder is not part of the promise)."""
    module = DPOModule(str(suite.model), beta=0.3, rpo_alpha=0.5, batch_invariant=True, head_strategy=head_strategy)
    module.configure_model()
    gen = torch.Generator().manual_seed(0)
    pairs, length, width = 5, 24, module.model.config.hidden_size
    hidden = torch.randn(2 * pairs, length, width, generator=gen)  # (2B, T, H): chosen rows, then rejected
    labels = torch.randint(0, module.model.config.vocab_size, (2 * pairs, length), generator=gen)
    labels[:, :6] = -100  # a prompt
    labels[3, 20:] = -100  # padding
    refs = torch.randn(2 * pairs, generator=gen) * 10 - 40

    def score(rows):
        picked = torch.cat([torch.as_tensor(rows), torch.as_tensor(rows) + pairs])
        out = module.pair_losses(hidden[picked], labels[picked], refs[rows], refs[[r + pairs for r in rows]])
        return torch.stack([t.detach() for t in out], 1)  # (len(rows), 5)

    together = score(list(range(pairs)))
    for row in range(pairs):
        alone = score([row])[0]
        assert torch.equal(alone, together[row]), (row, alone, together[row])
    assert together[:, 3].abs().min() > 1  # real log-probs, not zeros


def test_starts_at_log2_with_every_reference(suite, tmp_path):
    """Before any update the policy equals its reference, so DPO's loss is exactly log 2 for each kind
    (the precomputed reference: see also test_reference_cache.py)."""
    dm, batch = one_batch(suite)
    settings = [dict(reference="copy"), dict(reference="precomputed", reference_cache=str(tmp_path / "ref.pt")),
                dict(reference="adapter", lora={"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]})]
    for kwargs in settings:
        module = DPOModule(str(suite.model), beta=0.5, **kwargs)
        module.configure_model()
        if kwargs["reference"] == "precomputed":
            module.precompute_reference(dm)
        with torch.no_grad():
            loss = module.step(batch, "")
        assert loss.item() == pytest.approx(math.log(2), abs=1e-5), kwargs["reference"]


def test_training_raises_the_margin(suite):
    dm, _ = one_batch(suite, batch_size=8)
    module = DPOModule(str(suite.model), beta=0.5, lr=5e-3, warmup_ratio=0.0)
    trainer = pl.Trainer(max_epochs=4, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, dm)
    assert trainer.callback_metrics["rewards/margins"] > 0
    assert trainer.callback_metrics["loss"] < math.log(2)


@pytest.mark.parametrize("kwargs,match", [
    (dict(loss_type="simpo"), "reference-free"),
    (dict(loss_type="bt"), "loss_type='bt'"),
    (dict(reference="adapter"), "needs `lora`"),
    (dict(reference="none"), "reference-free"),
    (dict(head_strategy="tiled"), "head_strategy='tiled'"),
    (dict(head_strategy="chunked", backend="cpp"), "plain PyTorch"),
])
def test_bad_settings(suite, kwargs, match):
    with pytest.raises(ValueError, match=match):
        DPOModule(str(suite.model), **kwargs)


def test_per_pair_label_smoothing_from_the_batch(suite):
    """A batch's `label_smoothing` column (B,) smooths each pair by its own value (CREAM, arXiv 2410.12735 §3):
    loss_i = (1 - eps_i) * -log sigmoid(beta m_i) + eps_i * -log sigmoid(-beta m_i), replacing the constant."""
    _, batch = one_batch(suite)
    module = DPOModule(str(suite.model), beta=0.3, label_smoothing=0.4)
    module.configure_model()
    perturb(module.model)
    b = len(batch["ids"])
    eps = torch.linspace(0.0, 0.9, b)  # (B,), distinct per pair, some above 0.5
    policy, ref = logprobs_by_hand(module.model, batch), logprobs_by_hand(module.reference.model, batch)
    margin = 0.3 * ((policy[:b] - ref[:b]) - (policy[b:] - ref[b:]))
    expected = ((1 - eps) * -F.logsigmoid(margin) + eps * -F.logsigmoid(-margin)).mean()
    loss = module.step({**batch, "label_smoothing": eps}, "")
    torch.testing.assert_close(loss.double(), expected.double(), atol=1e-4, rtol=1e-4)
    constant = module.step(batch, "")  # without the column: the module's 0.4
    assert abs(constant.item() - loss.item()) > 1e-4
