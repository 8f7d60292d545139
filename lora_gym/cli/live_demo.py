"""`make demo`: a few live episodes of `LoRATune-v0` on the embedded default, printed per step."""

from __future__ import annotations

import argparse
import time

import gymnasium as gym

import lora_gym  # noqa: F401 - registers the env ids
from lora_gym.core.parsing import int_at_least


def main(argv: list[str] | None = None) -> None:
    """Run `--episodes` episodes of a random policy (or a fixed action) and print every step."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes", type=int_at_least(1), default=2, help="episodes to run")
    parser.add_argument("--seed", type=int_at_least(0), default=0,
                        help="seed of the first reset")
    parser.add_argument("--action", type=int, default=None,
                        help="a fixed action for every step (default: random actions)")
    parser.add_argument("--config", default=None, help="env config YAML (default: embedded)")
    parser.add_argument("--episode-length", type=int_at_least(1), default=None,
                        help="override T")
    args = parser.parse_args(argv)

    overrides = {"report_wall_time": True}
    if args.episode_length:
        overrides["episode_length"] = args.episode_length
    env = gym.make("LoRATune-v0", config=args.config, **overrides)
    env.action_space.seed(args.seed)
    for episode in range(args.episodes):
        obs, info = env.reset(seed=args.seed + episode)
        print(f"\nepisode {episode}: task={info['task']} untrained acc="
              f"{info['metrics']['accuracy']:.3f} ({info['wall_time_s']:.1f}s)")
        print(f"{'t':>2} {'rank':>4} {'lr':>8} {'acc':>6} {'f1':>6} {'loss':>6} {'cost':>5} "
              f"{'reward':>7} {'secs':>5}")
        done, ret, started = False, 0.0, time.perf_counter()
        while not done:
            action = env.action_space.sample() if args.action is None else args.action
            obs, reward, terminated, truncated, info = env.step(action)
            ret += reward
            m = info["metrics"]
            acc = "nan" if m["accuracy"] is None else f"{m['accuracy']:.3f}"
            f1 = "nan" if m["f1"] is None else f"{m['f1']:.3f}"
            loss = "nan" if m["val_loss"] is None else f"{m['val_loss']:.3f}"
            print(f"{info['step']:>2} {info['rank']:>4} {info['lr']:>8.1e} {acc:>6} {f1:>6} "
                  f"{loss:>6} {info['cost']:>5.2f} {reward:>7.3f} {info['wall_time_s']:>5.1f}")
            done = terminated or truncated
        print(f"return {ret:.3f} in {time.perf_counter() - started:.0f}s")
    env.close()


if __name__ == "__main__":
    main()
