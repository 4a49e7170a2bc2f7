"""SVD training with Hugging Face Trainer: a small GPT-2 on tiny-Shakespeare bytes, cut to half
its MACs, saved as a compact folder that reloads and generates.

    python examples/hf_trainer_gpt2.py          # some minutes on a CPU
    python examples/hf_trainer_gpt2.py --quick  # seconds: 4 KB of the text (or made-up text)

Three lines differ from plain Trainer use: SVDTraining(...), SVDTrainer(..., svd=svd) in place of
Trainer(...), and svd.compact() for the compact model. The GPT-2 is built from a config (nothing
downloaded) and trained dense first, standing for a pretrained one.
"""

import argparse
import tempfile
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

import svdtrain
from svdtrain.integrations.hf import load_compact_pretrained, save_compact_pretrained
from svdtrain.integrations.hf_trainer import SVDTrainer


class ByteBlocks(torch.utils.data.Dataset):
    """Consecutive blocks of a text's bytes, each its own labels (the model shifts them)."""

    def __init__(self, data: bytes, length: int) -> None:
        ids = torch.tensor(list(data[: len(data) // length * length]), dtype=torch.long)
        self.blocks = ids.view(-1, length)

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, index: int) -> dict:
        return {"input_ids": self.blocks[index], "labels": self.blocks[index]}


def arguments(out: str, epochs: int, lr: float) -> TrainingArguments:
    return TrainingArguments(output_dir=out, num_train_epochs=epochs, learning_rate=lr, per_device_train_batch_size=16,
                             weight_decay=0.01, use_cpu=True, report_to=[], save_strategy="no", logging_steps=50,
                             disable_tqdm=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/tinyshakespeare.txt", help="a text file, read as bytes")
    parser.add_argument("--out", default="", help="where the compact folder goes (default: a temporary folder)")
    parser.add_argument("--quick", action="store_true", help="4 KB of text, a tiny model, one epoch per stage")
    args = parser.parse_args()
    torch.manual_seed(0)
    path = Path(args.data)
    text = path.read_bytes() if path.exists() else b"To be, or not to be, that is the question.\n" * 400
    text = text[: 4_000 if args.quick else 300_000]
    width, epochs = (32, 1) if args.quick else (128, 3)
    train = ByteBlocks(text, 64)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=256, n_positions=128, n_embd=width, n_layer=2, n_head=4))

    with tempfile.TemporaryDirectory() as scratch:
        Trainer(model=model, args=arguments(scratch, epochs, 1e-3), train_dataset=train).train()  # "pretrained"

        config = svdtrain.SVDTrainingConfig(sparsity_weight=1e-3, target_reduction=2.0, gradual_cuts=epochs)
        svd = svdtrain.SVDTraining(model, config, example=train[0]["input_ids"][None])  # the tied head stays dense
        trainer = SVDTrainer(model=model, args=arguments(scratch, epochs, 3e-4), train_dataset=train, svd=svd)
        trainer.train()  # SVD training, a cut at each epoch end; ends pruned
        trainer.train()  # fine-tunes the pruned model
        small = svd.compact()
        print(f"MACs per block: {svdtrain.count_macs(small, svd.example):,} of {svd.baseline_macs:,}")

        folder = args.out or str(Path(scratch) / "compact")
        save_compact_pretrained(model, small, folder)
        again = load_compact_pretrained(folder, GPT2LMHeadModel)
        prompt = torch.tensor([list(b"ROMEO:\n")])
        sample = again.generate(prompt, max_new_tokens=60, do_sample=False, pad_token_id=0)
        print(bytes(sample[0].tolist()).decode("utf-8", errors="replace"))


if __name__ == "__main__":
    main()
