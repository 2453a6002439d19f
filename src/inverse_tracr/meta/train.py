"""The `train` stage: an Accelerate loop over streamed shards, resumable from the store.

Runs unchanged as one CPU process, as several local processes, or multi-node on GPUs (launched by
`accelerate launch`). Each rank streams its own shards (WebDataset's node splitting), so the data
loader is not handed to Accelerate. A run lives in `<store>/<zoo>/meta/<run>/`: `config.json`, then
`checkpoints/step-NNNNNNNN/`. Starting a run that has a checkpoint resumes from the newest one,
skipping the batches it had consumed, so a preempted pod loses at most one checkpoint interval and
ends with the same parameters as if never stopped.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from pathlib import Path

import safetensors.torch
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from transformers import get_cosine_schedule_with_warmup

from inverse_tracr.errors import InverseTracrError
from inverse_tracr.meta import checkpoint, vocab
from inverse_tracr.meta.data import by_size, quiet_handover, stream
from inverse_tracr.meta.config import MetaConfig, TrainConfig
from inverse_tracr.meta.model import MetaModel
from inverse_tracr.progress import progress_bar
from inverse_tracr.zoo.manifest import differences, read_config
from inverse_tracr.zoo.shards import shard_urls
from inverse_tracr.zoo.store import Store


_DISTRIBUTED_KEEPALIVE: list = []


def distributed() -> bool:
    """Whether this process trained as one rank of several (see `train`'s end)."""
    return bool(_DISTRIBUTED_KEEPALIVE)


class TrainError(InverseTracrError, RuntimeError):
    """The run cannot start: no shards, or a config that differs from the run's recorded one."""


def loss_and_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy over program tokens, and the share of them predicted right (padding excluded)."""
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=vocab.PAD_ID)
    mask = targets != vocab.PAD_ID
    accuracy = ((logits.argmax(-1) == targets) & mask).sum() / mask.sum().clamp(min=1)
    return loss, accuracy


def training_urls(store: Store, config: TrainConfig) -> list[str]:
    """The finished shards of the run's kinds; a distilled kind's `config.oversample` times over."""
    return [url for kind in config.kinds for url in shard_urls(store, config.zoo, kind) * (1 if kind == "standard" else config.oversample)]


def train(config: TrainConfig, stop_after: int | None = None, logdir: str | None = None, progress: bool = True) -> dict:
    """Train (or resume) until `config.steps`, or until step `stop_after`; returns the last figures."""
    store = Store(config.store)
    run = (config.zoo, "meta", config.run)
    newest = checkpoint.newest(store, run)
    # Checked before the run is recorded: a run that cannot start leaves nothing behind.
    start = _start_from(config) if config.init_from is not None and newest is None else None
    _record_config(store, run, config)
    urls = training_urls(store, config)
    if not urls:
        raise TrainError(f"no finished shards of kinds {', '.join(config.kinds)} in {store.url_of(config.zoo)}")

    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.grad_accum,
        log_with="tensorboard",
        project_dir=logdir or str(Path("runs") / config.zoo / config.run),
    )
    set_seed(config.seed)
    model = MetaModel(config.model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, config.warmup, config.steps)
    dataset = stream(urls, config.split, config.model.max_chunks, config.shuffle_buffer, config.seed,
                     weight_tokens=config.model.weight_tokens, cache_mb=config.cache_mb, symmetries=config.augment)
    dataset = dataset.compose(by_size(config.batch_size, config.size_pool, config.seed))
    loader = DataLoader(dataset, batch_size=None, num_workers=config.loader_workers, worker_init_fn=quiet_handover)
    batches = iter(loader)  # draws its seed from torch's RNG: before a checkpoint restores that RNG
    step, history = 0, []
    if newest is not None:
        step = checkpoint.load(store, newest, model, optimizer, scheduler)
        batches = itertools.islice(batches, step * config.grad_accum, None)  # resume where we were
        history = [h for h in read_history(store, config.zoo, config.run) if h["step"] <= step]
    elif start is not None:
        model.load_state_dict(start)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    accelerator.init_trackers("meta", config={"preset": config.model.preset, "decoder": config.model.decoder, "lr": config.lr})

    last = stop_after if stop_after is not None else config.steps
    bar = progress_bar(total=config.steps, initial=step, desc=f"train {config.run}", unit="step", enabled=progress and accelerator.is_main_process)
    figures: dict = {"step": step}
    started, samples = time.monotonic(), 0
    while step < min(last, config.steps):
        model.train()
        for _ in range(config.grad_accum):
            batch = {k: v.to(accelerator.device) for k, v in next(batches).items()}
            with accelerator.accumulate(model):
                logits = model(batch["features"], batch["weight_mask"], batch["program_in"], batch["program_mask"], batch["entries"])
                loss, accuracy = loss_and_accuracy(logits, batch["targets"])
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(trainable, config.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            samples += len(batch["targets"])
        step += 1
        figures = {"step": step, "loss": loss.item(), "token_accuracy": accuracy.item(), "lr": scheduler.get_last_lr()[0],
                   "samples_per_second": samples * accelerator.num_processes / (time.monotonic() - started)}
        # Figures before the count: a log line is written by update, and carries this step's figures.
        bar.set_postfix(loss=f"{figures['loss']:.3f}", acc=f"{figures['token_accuracy']:.3f}", sps=f"{figures['samples_per_second']:.0f}", refresh=False)
        bar.update(1)
        if step % config.log_every == 0:
            accelerator.log({k: v for k, v in figures.items() if k != "step"}, step=step)
            history.append(figures)
        if step % config.checkpoint_every == 0 or step == config.steps:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                folder = (*run, "checkpoints", f"step-{step:08d}")
                checkpoint.save(store, folder, step, accelerator.unwrap_model(model), optimizer, scheduler)
                store.write_bytes(json.dumps(history).encode(), *run, "history.json")
    bar.close()
    # Data-parallel ranks must end with the same parameters: compare a checksum across ranks.
    checksum = torch.stack([p.detach().double().sum() for p in accelerator.unwrap_model(model).parameters()]).sum()
    figures["ranks"] = accelerator.num_processes
    figures["ranks_in_sync"] = bool(torch.unique(accelerator.gather(checksum.reshape(1).to(accelerator.device))).numel() == 1)
    accelerator.end_training()
    if accelerator.num_processes > 1:
        # Freeing the DDP model frees its gloo process group, whose destructor can deadlock: it
        # waits, holding the GIL, for a gloo thread that needs the GIL (seen with py-spy). So the
        # distributed objects live until the process ends, and the CLI ends it with os._exit.
        _DISTRIBUTED_KEEPALIVE.append((model, optimizer, scheduler, accelerator))
    else:
        # Accelerate keeps one state per process and refuses another mixed precision later; a
        # single-process caller (a notebook, the pipeline, the tests) may train again with other settings.
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    return figures


def _record_config(store: Store, run: tuple[str, ...], config: TrainConfig) -> None:
    """Write the run's config, or refuse to resume a run with another one."""
    if store.exists(*run, "config.json"):
        try:  # read as the code reads it, so that a run recorded before a setting existed compares by what it used
            recorded = TrainConfig.from_json(json.loads(store.read_bytes(*run, "config.json"))).to_json()
        except (ValueError, TypeError, KeyError) as error:
            raise TrainError(f"run {'/'.join(run)} has an unreadable config.json ({error}); use another --run name") from None
        # Tuples become lists; what only changes the time (the examples kept in memory) may differ.
        recorded, wanted = ({k: v for k, v in json.loads(json.dumps(c)).items() if k != "cache_mb"} for c in (recorded, config.to_json()))
        if recorded != wanted:
            raise TrainError(f"run {'/'.join(run)} exists with other settings ({', '.join(differences(recorded, wanted))}); "
                             f"use another run name (train --run, training.run in run --config) or remove {store.url_of(*run)}")
        return
    store.write_bytes(json.dumps(config.to_json(), sort_keys=True).encode(), *run, "config.json")


def _start_from(config: TrainConfig) -> dict[str, torch.Tensor]:
    """Transfer: the weights a new run starts from, another run's newest — a compressed students'
    decompiler starts from the standard models' one, say. Only the weights: the new run's
    optimizer and schedule start afresh, as its data does."""
    source = load_model(config.store, config.zoo, config.init_from)
    given, wanted = (_architecture(c) for c in (source.config, config.model))
    if given != wanted:
        raise TrainError(f"cannot start from run {config.zoo}/meta/{config.init_from}: it is another model ({', '.join(differences(given, wanted))})")
    return source.state_dict()


def _architecture(config: MetaConfig) -> dict:
    """A model's settings but those only training uses (its regularisation)."""
    return dataclasses.asdict(dataclasses.replace(config, dropout=0.0, input_noise=0.0, input_dropout=0.0))


def read_history(store: Store, zoo: str, run: str) -> list[dict]:
    """Training figures every `log_every` steps, up to the newest checkpoint ([] if none)."""
    try:
        return json.loads(store.read_bytes(zoo, "meta", run, "history.json"))
    except FileNotFoundError:
        return []


def load_model(store_url: str, zoo: str, run: str, folder: tuple[str, ...] | None = None) -> MetaModel:
    """The newest checkpoint of a run (or the one in `folder`), ready to `decompile`."""
    store = Store(store_url)
    folder = folder or checkpoint.newest(store, (zoo, "meta", run))
    if folder is None:
        raise TrainError(f"run {zoo}/meta/{run} in {store.url} has no checkpoint")
    recorded = json.loads(store.read_bytes(zoo, "meta", run, "config.json"))
    if recorded.get("model", {}).get("targets") != vocab.LAYOUT:
        raise TrainError(f"run {zoo}/meta/{run} writes programs in another layout than {vocab.LAYOUT}: train a new run")
    config = TrainConfig.from_json(recorded)
    model = MetaModel(config.model)
    model.load_state_dict(safetensors.torch.load(store.read_bytes(*folder, "model.safetensors")))
    zoo_config = read_config(store, zoo)
    model.program_vocab, model.program_max_seq_len = zoo_config.sampler.vocab, zoo_config.max_seq_len
    return model.eval()
