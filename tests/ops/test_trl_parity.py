"""preference_loss equals TRL's DPOTrainer loss on the same model and batch, for the loss types they share.

TRL computes the loss inside DPOTrainer._compute_loss; we drive a real trainer (a tiny random Llama saved to
a path, a word-level tokenizer built offline) and compare its loss with ours computed through lit_align's
fused path on the same collated batch. TRL's IPO divides each log-ratio by the completion length, which is
our ipo on length-normalised scores (average_log_prob=True).
"""
import pytest
import torch

from lit_align.ops import fused_linear_preference_loss, linear_sequence_logprobs

transformers = pytest.importorskip("transformers")
trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

WORDS = "the cat dog sat ran on a mat log red blue fast slow".split()


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    vocab = {w: i for i, w in enumerate(["<pad>", "<eos>", "<unk>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>",
                                                unk_token="<unk>")


def tiny_model(path, tokenizer, seed):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    transformers.LlamaForCausalLM(config).save_pretrained(path)
    return transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("trl")
    tokenizer = tiny_tokenizer()
    policy, ref = tiny_model(root / "policy", tokenizer, 0), tiny_model(root / "ref", tokenizer, 1)
    rows = [dict(prompt="the cat", chosen=" sat on a mat", rejected=" ran"),
            dict(prompt="a red dog ran on", chosen=" the log", rejected=" a blue mat fast slow"),
            dict(prompt="slow", chosen=" cat", rejected=" dog sat on the red log")]
    return root, tokenizer, policy, ref, datasets.Dataset.from_list(rows)


def trl_loss(setup, loss_type, label_smoothing):
    root, tokenizer, policy, ref, data = setup
    args = trl.DPOConfig(output_dir=str(root / "out"), beta=0.3, loss_type=[loss_type],
                         label_smoothing=label_smoothing, report_to="none", use_cpu=True,
                         per_device_train_batch_size=3, bf16=False)
    trainer = trl.DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=data, processing_class=tokenizer)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(data))])
    with torch.no_grad():
        loss = trainer._compute_loss(trainer.model, batch, return_outputs=False)
    return float(loss), batch, trainer


def our_loss(batch, trainer, loss_type, label_smoothing):
    ids, attention, completion = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
    labels = ids[:, 1:].masked_fill(completion[:, 1:] == 0, -100)  # (2B, T-1), shifted
    average = loss_type == "ipo"
    b = ids.shape[0] // 2
    with torch.no_grad():
        ref_hidden = trainer.ref_model.model(input_ids=ids, attention_mask=attention).last_hidden_state[:, :-1]
        ref = linear_sequence_logprobs(ref_hidden, trainer.ref_model.lm_head.weight, labels,
                                       average_log_prob=average)  # (2B,)
        hidden = trainer.model.model(input_ids=ids, attention_mask=attention).last_hidden_state[:, :-1]  # (2B, T-1, H)
        loss, _, _ = fused_linear_preference_loss(hidden, trainer.model.lm_head.weight, labels, ref_chosen=ref[:b],
                                                  ref_rejected=ref[b:], beta=0.3, loss_type=loss_type,
                                                  label_smoothing=label_smoothing, average_log_prob=average)
    return float(loss.mean())


@pytest.mark.parametrize("loss_type,label_smoothing", [("sigmoid", 0.0), ("hinge", 0.0), ("ipo", 0.0),
                                                       ("robust", 0.2)])
def test_matches_trl_dpo_trainer(setup, loss_type, label_smoothing):
    expected, batch, trainer = trl_loss(setup, loss_type, label_smoothing)
    assert expected > 0
    assert our_loss(batch, trainer, loss_type, label_smoothing) == pytest.approx(expected, rel=1e-5, abs=1e-6)
