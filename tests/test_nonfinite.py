"""The non-finite guard, end to end on the tiny model: a NaN in the weights, the loss or a reward stops the run at
that step with a message naming the step, the quantity and what to try; no non-finite weight is ever saved; the
newest good checkpoint resumes. Every run is 4 optimizer steps with a checkpoint every 2 (8 prompts x 2
generations / 4 completions per step).
"""

import functools
import math
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from chartrvr_nb.checkpoints import complete_checkpoints, newest_complete_checkpoint
from chartrvr_nb.health import NonFiniteError
from chartrvr_nb.presets import get_preset
from chartrvr_nb.train import train

QUICK = dict(subset_size=8, save_steps=2, sample_every=2, max_completion_length=48)


class NaNIntoAWeight(TrainerCallback):
    """Sets one trained weight to NaN once ``done`` optimizer steps are done: at the end of that step, or
    (``mid_step``) after the first micro-batch of the next one, when its completions are already generated."""

    def __init__(self, done: int, mid_step: bool = False):
        self.done, self.mid_step, self.poisoned = done, mid_step, False

    def poison(self, state, model):
        if state.global_step == self.done and not self.poisoned:
            parameter = next(p for p in model.parameters() if p.requires_grad)
            with torch.no_grad():
                parameter.view(-1)[0] = float("nan")
            self.poisoned = True

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if not self.mid_step:
            self.poison(state, model)

    def on_substep_end(self, args, state, control, model=None, **kwargs):
        if self.mid_step:
            self.poison(state, model)


def finite_file(path) -> bool:
    return all(torch.isfinite(tensor).all() for tensor in load_file(str(path)).values())


def test_a_nan_loss_stops_the_run_at_that_step_between_logging_steps_and_the_run_resumes(tmp_path, tiny_model_dir):
    preset = get_preset("smoke", logging_steps=3, **QUICK)  # step 4 is not a logging step
    out = tmp_path / "run"
    with pytest.raises(NonFiniteError) as stopped:
        train(preset, output_dir=out, callbacks=[NaNIntoAWeight(done=3, mid_step=True)])
    message = str(stopped.value)
    print(message)
    assert message.startswith("Training stopped at step 4: the loss is nan.")
    assert "lower learning rate (now 0.001)" in message
    assert "checkpoint-2 is the newest good checkpoint" in message
    assert [c.name for c in complete_checkpoints(out)] == ["checkpoint-2"]
    assert not (out / "checkpoint-4").exists() and not (out / "adapter").exists()

    resumed = train(preset, output_dir=out)  # the lock was released; the same command resumes
    assert resumed.resumed_from.name == "checkpoint-2" and resumed.global_step == 4
    assert finite_file(out / "checkpoint-4" / "adapter_model.safetensors")
    assert finite_file(out / "adapter" / "adapter_model.safetensors")


def test_nan_weights_stop_the_next_generation_with_the_guards_message(tmp_path, tiny_model_dir):
    out = tmp_path / "run"
    with pytest.raises(NonFiniteError) as stopped:
        train(get_preset("smoke", **QUICK), output_dir=out, callbacks=[NaNIntoAWeight(done=3)])
    assert str(stopped.value).startswith(
        "Training stopped at step 4: the model's next-token probabilities are not finite while generating"
    )
    assert [c.name for c in complete_checkpoints(out)] == ["checkpoint-2"]


def test_a_nan_weight_at_a_saving_step_is_never_saved(tmp_path, tiny_model_dir):
    out = tmp_path / "run"
    with pytest.raises(NonFiniteError, match=r"^Training stopped at step 2: a trained weight is not finite \(") as e:
        train(get_preset("smoke", **QUICK), output_dir=out, callbacks=[NaNIntoAWeight(done=2)])
    assert "holds NaN or inf" in str(e.value) and "so running again starts over" in str(e.value)
    assert not list(out.glob("checkpoint-*")) and not (out / "adapter").exists()


def nan_from_step(reward, step: int):
    """``reward`` returning NaN for every completion generated once ``step`` optimizer steps are done."""

    @functools.wraps(reward)
    def broken(completions, trainer_state=None, **kwargs):
        values = reward(completions, **kwargs)
        return [math.nan] * len(values) if trainer_state.global_step >= step else values

    return broken


def test_a_reward_returning_nan_stops_a_full_finetune_at_that_step(tmp_path, tiny_model_dir, monkeypatch):
    from chartrvr_nb import rewards, trainer

    broken = [nan_from_step(fn, 2) if fn.__name__ == "length_reward" else fn for fn in rewards.get_rewards()]
    monkeypatch.setattr(trainer, "get_rewards", lambda: broken)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteError) as stopped:
        train(get_preset("smoke", finetune="full", **QUICK), output_dir=out)
    message = str(stopped.value)
    assert message.startswith(
        "Training stopped at step 3: a reward is not a finite number (NaN, inf or None from length_reward for 4 of 4"
    )
    assert "python -m chartrvr_nb rewards RUN_DIR" in message and "checkpoint-2 is the newest good" in message
    assert [c.name for c in complete_checkpoints(out)] == ["checkpoint-2"]
    assert finite_file(newest_complete_checkpoint(out) / "model.safetensors")


def fake_trainer(skipped: bool):
    """What ``ChartRVRTrainer._check_step`` reads, for one process with fp16 loss scaling."""
    stops = []
    fake = SimpleNamespace(
        _nonfinite_loss=None,
        _skipped_in_a_row=0,
        accelerator=SimpleNamespace(optimizer_step_was_skipped=skipped),
        state=SimpleNamespace(global_step=7),
        _on_any_process=lambda *flags: list(flags),
        _stop=lambda quantity, detail, step: stops.append((quantity, detail, step)),
    )
    return fake, stops


def test_fp16_loss_scaling_may_skip_overflowing_steps_but_not_forever():
    from chartrvr_nb.trainer import FP16_SKIPPED_STEPS_LIMIT, ChartRVRTrainer

    fake, stops = fake_trainer(skipped=True)
    for _ in range(FP16_SKIPPED_STEPS_LIMIT):
        ChartRVRTrainer._check_step(fake, math.inf)
    assert stops == []  # the scaler skipped those steps: the weights never saw the inf
    ChartRVRTrainer._check_step(fake, 0.5)
    assert fake._skipped_in_a_row == 0  # a finite step starts the count again
    for _ in range(FP16_SKIPPED_STEPS_LIMIT + 1):
        ChartRVRTrainer._check_step(fake, math.inf)
    assert stops == [("gradient norm", "inf in 21 optimizer steps in a row, each skipped by fp16 loss scaling", 7)]

    fake, stops = fake_trainer(skipped=False)  # no loss scaling: an inf gradient reached the weights
    ChartRVRTrainer._check_step(fake, math.nan)
    assert stops == [("gradient norm", "nan", 7)]
