"""Bad input to `argus profile` / `argus train` and the files they read: clear errors, nothing half-written.

Cases (each: exit code 2, stderr names the file or flag and the problem, no output file appears):
- profile: empty prompt file; prompt set over --max-prompts; a prompt over the length limit;
  a missing prompt file; a TSV without a Prompt column; a JSONL line that is not JSON;
  unknown level name; a level set without cache-k0; model-* levels; bad --batch-sizes;
  an existing finished --out
- profile resume: a `.partial` started with other settings is refused, naming it
- train: a corrupt profile line (names file:line); an empty file; a file that is not a profile;
  an incomplete profile; a profile of another model (--model); two profiles of different models;
  a prompt record with a level the header does not list; bad --floors
"""

from __future__ import annotations

import json

import pytest

from argus.cli import main
from argus.prompt.profile_data import header_line

TINY = "tiny-sd-0123456789ab"


def run_cli(capsys, *argv):
    rc = main(list(map(str, argv)))
    return rc, capsys.readouterr().err


def profile_args(prompts, out, *extra):
    return ["profile", "--prompts", prompts, "--out", out, "--steps", "4", "--levels", "cache-k0,cache-k2,steps-2",
            "--no-progress", *extra]


@pytest.mark.parametrize("name,content,extra,message", [
    ("empty.txt", "\n  \n", [], "no prompts in the file"),
    ("many.txt", "\n".join(f"prompt {i}" for i in range(30)), ["--max-prompts", "10"],
     "30 prompts exceed the limit of 10"),
    ("long.txt", "ok\n" + "x" * 2001, [], ":2: prompt of 2001 characters (max 2000)"),
    ("cols.tsv", "Text\tCategory\na cat\tAnimals\n", [], "TSV needs a 'Prompt' column"),
    ("bad.jsonl", '{"prompt": "a"}\n{oops\n', [], ":2: not JSON"),
])
def test_profile_bad_prompt_sets(tmp_path, capsys, name, content, extra, message):
    src = tmp_path / name
    src.write_text(content)
    out = tmp_path / "out" / "p.jsonl"
    rc, err = run_cli(capsys, *profile_args(src, out, *extra))
    assert rc == 2
    assert str(src) in err and message in err
    assert not (tmp_path / "out").exists()


def test_profile_missing_prompt_file(tmp_path, capsys):
    rc, err = run_cli(capsys, *profile_args(tmp_path / "nope.txt", tmp_path / "p.jsonl"))
    assert rc == 2 and f"{tmp_path / 'nope.txt'}: prompt file not found" in err


@pytest.mark.parametrize("levels,message", [
    ("cache-k0,warp-3", "--levels: unknown level 'warp-3'"),
    ("steps-2,cache-k2", "must include the full-quality level 'cache-k0'"),
    ("cache-k0,cache-k9", "K=9 must be in [0, 4)"),
    ("cache-k0,cache-k0", "'cache-k0' appears twice"),
])
def test_profile_bad_levels(tmp_path, capsys, levels, message):
    src = tmp_path / "p.txt"
    src.write_text("a cat\n")
    rc, err = run_cli(capsys, "profile", "--prompts", src, "--out", tmp_path / "o.jsonl", "--steps", "4",
                      "--levels", levels)
    assert rc == 2 and message in err
    assert list(tmp_path.iterdir()) == [src]


def test_profile_bad_batch_sizes_and_existing_out(tmp_path, capsys):
    src = tmp_path / "p.txt"
    src.write_text("a cat\n")
    rc, err = run_cli(capsys, *profile_args(src, tmp_path / "o.jsonl", "--batch-sizes", "1,x"))
    assert rc == 2 and "--batch-sizes: '1,x' is not a comma list of integers" in err
    done = tmp_path / "done.jsonl"
    done.write_text("finished\n")
    rc, err = run_cli(capsys, *profile_args(src, done))
    assert rc == 2 and f"{done}: already exists" in err and done.read_text() == "finished\n"


def test_run_profile_refuses_model_levels_existing_out_and_foreign_partial(tmp_path):
    from argus.levels import LevelError
    from argus.prompt.profile_data import ProfileDataError
    from argus.prompt.profiling import ProfileRun, partial_path, run_profile

    class Pipe:  # only what run_profile touches before any generation
        class settings:
            steps = 4
        identity = TINY

        def check_size(self, h, w):
            pass

    class Scorer:
        name, kind = "clip:tiny-random", "clip-cosine"

    class Emb:
        name, dim = "all-MiniLM-L6-v2", 4

    with pytest.raises(LevelError, match="model-\\* levels need their own weights"):
        run_profile(["a"], Pipe(), Scorer(), Emb(), ProfileRun(levels=("cache-k0", "model-tiny")), tmp_path / "a.jsonl")
    done = tmp_path / "done.jsonl"
    done.write_text("{}\n")
    with pytest.raises(ProfileDataError, match=f"{done}: already exists"):
        run_profile(["a"], Pipe(), Scorer(), Emb(), ProfileRun(levels=("cache-k0",)), done)
    out = tmp_path / "r.jsonl"
    hdr = header_line(model="another-model", steps=4, levels=["cache-k0"], encoder="all-MiniLM-L6-v2",
                      scorer="clip:tiny-random", score_kind="clip-cosine", height=64, width=64, seed=0,
                      prompts_sha256="x", n_prompts=1, batch_sizes=[1, 4, 8])
    partial_path(out).write_text(json.dumps(hdr) + "\n")
    before = partial_path(out).read_text()
    with pytest.raises(ProfileDataError, match=f"{partial_path(out)}: cannot resume: it was started with "
                                               "model='another-model', this run has 'tiny-sd-0123456789ab'"):
        run_profile(["a"], Pipe(), Scorer(), Emb(), ProfileRun(levels=("cache-k0",)), out)
    assert partial_path(out).read_text() == before and not out.exists()


def write_profile(path, model=TINY, n=4, drop_last=False, extra_quality=None, levels=("cache-k0", "steps-2")):
    hdr = header_line(model=model, steps=4, levels=list(levels), encoder="all-MiniLM-L6-v2",
                      scorer="clip:tiny-random", score_kind="clip-cosine", height=32, width=32, seed=0,
                      prompts_sha256="x", n_prompts=n, batch_sizes=[1])
    lines = [hdr]
    for i in range(n - (1 if drop_last else 0)):
        q = {lv: 100.0 - 5 * j for j, lv in enumerate(levels)}
        q.update(extra_quality or {})
        lines.append({"type": "prompt", "i": i, "prompt": f"prompt {i}", "seed": i, "neighbour": (i + 1) % n,
                      "similarity": 0.5, "scores": {lv: 50.0 for lv in levels}, "quality": q})
    lines += [{"type": "latency", "level": lv, "batch_size": 1, "seconds": 1.0} for lv in levels]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def train_args(tmp_path, *profiles, extra=()):
    args = ["train", "--out", tmp_path / "pred.json"]
    for p in profiles:
        args += ["--profile", p]
    return args + list(extra)


def assert_nothing_written(tmp_path):
    assert not (tmp_path / "pred.json").exists() and not (tmp_path / "pred.eval.png").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pred")]


def test_train_corrupt_line(tmp_path, capsys):
    p = write_profile(tmp_path / "p.jsonl")
    lines = p.read_text().splitlines()
    lines[2] = lines[2][:30]
    p.write_text("\n".join(lines) + "\n")
    rc, err = run_cli(capsys, *train_args(tmp_path, p))
    assert rc == 2 and f"{p}:3: corrupt profile line" in err
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize("content,message", [
    ("", "empty profile (no header line)"),
    ('{"type": "header", "format": "something"}\n', "not an argus-quality-profile file"),
    ("[1, 2]\n", "expected a JSON object"),
])
def test_train_not_a_profile(tmp_path, capsys, content, message):
    p = tmp_path / "p.jsonl"
    p.write_text(content)
    rc, err = run_cli(capsys, *train_args(tmp_path, p))
    assert rc == 2 and str(p) in err and message in err
    assert_nothing_written(tmp_path)


def test_train_incomplete_profile(tmp_path, capsys):
    p = write_profile(tmp_path / "p.jsonl", drop_last=True)
    rc, err = run_cli(capsys, *train_args(tmp_path, p))
    assert rc == 2 and f"{p}: incomplete profile (3/4 prompts)" in err
    assert_nothing_written(tmp_path)


def test_train_profile_of_another_model(tmp_path, capsys):
    p = write_profile(tmp_path / "p.jsonl", model="sdxl")
    rc, err = run_cli(capsys, *train_args(tmp_path, p, extra=["--model", TINY]))
    assert rc == 2 and f"{p}: profile of model 'sdxl', expected '{TINY}'" in err
    q = write_profile(tmp_path / "q.jsonl")
    rc, err = run_cli(capsys, *train_args(tmp_path, q, p))
    assert rc == 2 and f"{p}: model='sdxl' differs from {q}'s '{TINY}'" in err
    assert_nothing_written(tmp_path)


def test_train_unknown_level_in_record(tmp_path, capsys):
    p = write_profile(tmp_path / "p.jsonl", extra_quality={"steps-9": 80.0})
    rc, err = run_cli(capsys, *train_args(tmp_path, p))
    assert rc == 2 and f"{p}:2: quality for unknown level 'steps-9'" in err
    assert_nothing_written(tmp_path)


def test_train_bad_floors(tmp_path, capsys):
    p = write_profile(tmp_path / "p.jsonl")
    rc, err = run_cli(capsys, *train_args(tmp_path, p, extra=["--floors", "90,abc"]))
    assert rc == 2 and "--floors: '90,abc' is not a comma list of numbers" in err
    assert_nothing_written(tmp_path)
