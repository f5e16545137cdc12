"""The best adapter by eval loss: each eval keeps a new best in checkpoints/best and counts the evals
without one (early stopping); at the end adapter/ gets the best or the last weights (train.final_adapter)."""

from __future__ import annotations

import shutil

from forumtune.atomic import atomic_directory
from forumtune.layout import checkpoint_adapter
from forumtune.train import distributed
from forumtune.train.checkpoints import save_adapter_weights, save_best
from forumtune.train.training_run import TrainingRun


def measure_eval_loss(run: TrainingRun, elapsed: float) -> bool:
    """Eval loss; a new best is saved to checkpoints/best. Returns whether early stopping says stop."""
    train_cfg, state = run.config.train, run.state
    eval_loss = run.objective.eval_loss(
        distributed.unwrap(run.model),
        run.eval_records,
        train_cfg.micro_batch_size,
        run.tokenizer.pad_token_id,
        run.device,
    )
    run.reporter.write(step=state.step, split="eval", loss=eval_loss, elapsed_s=elapsed)
    if state.best_eval_loss is None or eval_loss < state.best_eval_loss - train_cfg.early_stopping_min_delta:
        state.best_eval_loss, state.best_step, state.evals_without_improvement = eval_loss, state.step, 0
        save_best(run.layout.checkpoints, run.model, state, run.ranks)
        return False
    state.evals_without_improvement += 1
    return patience_ran_out(run)


def patience_ran_out(run: TrainingRun) -> bool:
    patience = run.config.train.early_stopping_patience
    return patience is not None and run.state.evals_without_improvement >= patience


def save_final_adapter(run: TrainingRun) -> int:
    """adapter/: the best adapter by eval loss (train.final_adapter=best) or the last weights."""
    layout = run.layout
    best = checkpoint_adapter(layout.best_checkpoint)
    use_best = run.config.train.final_adapter == "best" and best.is_dir() and run.state.best_step is not None
    with atomic_directory(layout.adapter, write=run.ranks.is_main) as staging:
        if use_best and staging is not None:
            shutil.copytree(best, staging, dirs_exist_ok=True)
        if not use_best:
            save_adapter_weights(run.model, staging)
        if staging is not None:
            run.tokenizer.save_pretrained(staging)
    distributed.barrier(run.ranks)
    return run.state.best_step if use_best else run.state.step
