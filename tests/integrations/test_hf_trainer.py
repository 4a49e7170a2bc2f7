"""SVDTrainer: Hugging Face Trainer with SVD training, to a compact model that computes the same."""

import pytest
import torch

pytest.importorskip("accelerate")
transformers = pytest.importorskip("transformers")

import svdtrain  # noqa: E402
from svdtrain.integrations.hf_trainer import SVDTrainer  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # GPT-2's tied head stays dense


class _Tokens(torch.utils.data.Dataset):
    def __init__(self, count: int = 16, length: int = 16) -> None:
        self.ids = torch.randint(0, 64, (count, length), generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        return {"input_ids": self.ids[index], "labels": self.ids[index]}


def _trainer(tmp_path, config: svdtrain.SVDTrainingConfig, **args) -> SVDTrainer:
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))
    svd = svdtrain.SVDTraining(model, config, example=_Tokens().ids[:1])
    args = transformers.TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, learning_rate=1e-3,
                                          use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True,
                                          weight_decay=0.01, **args)  # fmt: skip
    return SVDTrainer(model=model, args=args, train_dataset=_Tokens(), svd=svd)


def test_gradual_cuts_then_fine_tuning_end_in_a_compact_model_with_the_same_outputs(tmp_path):
    trainer = _trainer(tmp_path, svdtrain.SVDTrainingConfig(target_reduction=2.0, gradual_cuts=2), num_train_epochs=2)
    svd, model = trainer.svd, trainer.model
    trainer.train()
    assert svd.cuts == 2 and svd.pruned and trainer.optimizer is None
    assert svdtrain.count_macs(model, svd.example) <= svd.baseline_macs / 2
    trainer.train()  # fine-tunes the pruned model with a fresh optimizer
    held = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert held == {id(p) for p in model.parameters()}
    model.eval()
    small = svd.finish().eval()
    torch.testing.assert_close(small(svd.example).logits, model(svd.example).logits, rtol=1e-4, atol=1e-4)


def test_factors_are_never_decayed_and_the_loss_carries_the_regularizers(tmp_path):
    trainer = _trainer(tmp_path, svdtrain.SVDTrainingConfig(sparsity_weight=0.5), max_steps=1)
    model, svd = trainer.model, trainer.svd
    decayed = trainer.get_decay_parameter_names(model)
    assert decayed and not [name for name in decayed if "parametrizations" in name]
    batch = {key: value.unsqueeze(0) for key, value in _Tokens()[0].items()}
    model.train()
    with_terms = trainer.compute_loss(model, batch)
    plain = model(**batch).loss
    expected = svd.regularization.loss(model)
    torch.testing.assert_close(with_terms, plain + expected)
