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
                                          use_cpu=True, report_to=[], disable_tqdm=True, weight_decay=0.01,
                                          **{"save_strategy": "no", **args})  # fmt: skip
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
    small = svd.compact().eval()
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


def _resumable(tmp_path, **args) -> SVDTrainer:
    config = svdtrain.SVDTrainingConfig(target_reduction=2.0, gradual_cuts=2, s_lr_scale=10.0)
    return _trainer(tmp_path, config, num_train_epochs=3, save_strategy="epoch", seed=0, data_seed=0, **args)


def _state(model) -> dict:
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


@pytest.mark.parametrize("restore_callbacks", [False, True])  # True: Trainer rebuilds the callback itself
def test_a_run_resumed_after_a_cut_ends_with_the_same_ranks_and_weights(tmp_path, restore_callbacks):
    whole = _resumable(tmp_path / "whole")
    whole.train()
    ranks, weights = svdtrain.train.checkpoint.ranks_of(whole.model), _state(whole.model)
    # A job cut off after the first epoch (and its first cut): a fresh model, SVDTraining and Trainer
    resumed = _resumable(tmp_path / "whole", restore_callback_states_from_checkpoint=restore_callbacks)
    first = sorted((tmp_path / "whole").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[0]
    resumed.train(resume_from_checkpoint=str(first))
    assert resumed.svd.cuts == 2 and resumed.svd.pruned and resumed.svd.steps == whole.svd.steps
    assert svdtrain.train.checkpoint.ranks_of(resumed.model) == ranks
    for key, value in _state(resumed.model).items():
        torch.testing.assert_close(value, weights[key], rtol=1e-4, atol=1e-5, msg=key)


def test_resume_true_finds_the_last_checkpoint_and_a_checkpoint_without_svd_state_is_refused(tmp_path):
    whole = _resumable(tmp_path / "run")
    whole.train()
    resumed = _resumable(tmp_path / "run")
    resumed.train(resume_from_checkpoint=True)  # the last: all cuts made, nothing left to train
    assert resumed.svd.cuts == 2 and svdtrain.train.checkpoint.ranks_of(resumed.model) == \
        svdtrain.train.checkpoint.ranks_of(whole.model)  # fmt: skip
    plain = transformers.Trainer(model=transformers.GPT2LMHeadModel(whole.model.config), args=whole.args,
                                 train_dataset=_Tokens())  # fmt: skip
    plain.args.output_dir = str(tmp_path / "plain")
    plain.args.num_train_epochs = 1
    plain.train()
    checkpoint = next((tmp_path / "plain").glob("checkpoint-*"))
    with pytest.raises(ValueError, match="holds no SVD-training state"):
        _resumable(tmp_path / "other").train(resume_from_checkpoint=str(checkpoint))


def test_the_singular_values_get_their_own_rate(tmp_path):
    trainer = _resumable(tmp_path)
    trainer.create_optimizer()
    singular = {id(h.s) for h in svdtrain.factored_weights(trainer.model).values()}
    groups = trainer.optimizer.param_groups
    s_groups = [g for g in groups if any(id(p) in singular for p in g["params"])]
    assert len(s_groups) == 1 and {id(p) for p in s_groups[0]["params"]} == singular
    assert s_groups[0]["lr"] == pytest.approx(10 * trainer.args.learning_rate) and s_groups[0]["weight_decay"] == 0
    assert sum(len(g["params"]) for g in groups) == len(list(trainer.model.parameters()))


def _composed(tmp_path, base, config, **extra_args):
    """``base`` (a Trainer subclass) with SVD training on the tiny GPT-2, ready to train."""
    if base == "SFTTrainer":
        trl = pytest.importorskip("trl")
        datasets = pytest.importorskip("datasets")
        cls = trl.SFTTrainer
        data = datasets.Dataset.from_dict({"input_ids": _Tokens().ids.tolist()})
        args_cls = trl.SFTConfig
        extra = {"max_length": 16, "packing": False}
        tokenizers = pytest.importorskip("tokenizers")
        vocab = {f"t{i}": i for i in range(64)}
        word_level = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="t1"))
        built = {"processing_class": transformers.PreTrainedTokenizerFast(tokenizer_object=word_level, pad_token="t0",
                                                                          eos_token="t2")}  # fmt: skip
    else:
        cls, data, args_cls, extra = transformers.Seq2SeqTrainer, _Tokens(), transformers.Seq2SeqTrainingArguments, {}
        built = {}
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=2,
                                                                 n_head=4, pad_token_id=0, resid_pdrop=0.0,
                                                                 embd_pdrop=0.0, attn_pdrop=0.0))  # fmt: skip
    svd = svdtrain.SVDTraining(model, config, example=_Tokens().ids[:1])
    args = args_cls(output_dir=str(tmp_path), per_device_train_batch_size=4, learning_rate=1e-3, use_cpu=True,
                    report_to=[], disable_tqdm=True, **{"save_strategy": "no", "num_train_epochs": 1, **extra,
                                                        **extra_args})  # fmt: skip
    trainer = svdtrain.integrations.hf_trainer.with_svd_training(cls)(model=model, args=args, train_dataset=data,
                                                                     svd=svd, **built)  # fmt: skip
    assert isinstance(trainer, cls) and type(trainer).__name__ == f"SVD{base}"
    return trainer


@pytest.mark.parametrize("base", ["Seq2SeqTrainer", "SFTTrainer"])
def test_any_trainer_class_composes_with_svd_training(tmp_path, base):
    trainer = _composed(tmp_path, base, svdtrain.SVDTrainingConfig(target_reduction=2.0, gradual_cuts=1))
    svd, model = trainer.svd, trainer.model
    trainer.train()
    assert svd.cuts == 1 and svd.pruned
    assert svdtrain.count_macs(model, svd.example) <= svd.baseline_macs / 2


def test_with_svd_training_takes_trainer_classes_only():
    with pytest.raises(TypeError, match="takes transformers.Trainer or a subclass"):
        svdtrain.integrations.hf_trainer.with_svd_training(dict)


def test_an_sft_trainer_run_resumed_after_a_cut_ends_with_the_same_ranks_and_weights(tmp_path):
    config = svdtrain.SVDTrainingConfig(target_reduction=2.0, gradual_cuts=2)
    settings = {"num_train_epochs": 3, "save_strategy": "epoch", "seed": 0, "data_seed": 0}
    whole = _composed(tmp_path, "SFTTrainer", config, **settings)
    whole.train()
    first = sorted(tmp_path.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[0]
    resumed = _composed(tmp_path, "SFTTrainer", config, **settings)
    resumed.train(resume_from_checkpoint=str(first))
    assert (resumed.svd.cuts, resumed.svd.pruned) == (2, True)
    assert svdtrain.train.checkpoint.ranks_of(resumed.model) == svdtrain.train.checkpoint.ranks_of(whole.model)
    for (key, value), other in zip(_state(whole.model).items(), _state(resumed.model).values()):
        torch.testing.assert_close(other, value, rtol=1e-4, atol=1e-5, msg=key)
