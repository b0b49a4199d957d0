"""Per-step cost by position in the schedule (diagnostic for bench_levels.py).

Times each denoising step (UNet call + DDIM step) of a full N=50 run and of a 20-step run on the
tiny model at batch 1 and 4, with and without torch.set_flush_denormal, and counts subnormal
floats in every UNet module output at an early, a middle and a late step. Cache levels run the
late steps of the schedule, step levels spread over all of it, so a position-dependent step cost
(e.g. denormals as values shrink) would bias their ratios in opposite directions.

Run: flock /tmp/argus-cpu.lock .venv/bin/python bench/bench_level_steps.py   (~1 min of CPU)
"""
import sys, time, statistics, torch
from diffusers import DDIMScheduler
from argus.worker.pipeline import DiffusionPipeline, PipelineSettings
torch.set_num_threads(1)
pipe = DiffusionPipeline(PipelineSettings())
c = pipe.components
TINY = torch.finfo(torch.float32).tiny
sub = {"n": 0, "tot": 0}
def hook(m, i, o):
    if isinstance(o, torch.Tensor):
        sub["n"] += int(((o != 0) & (o.abs() < TINY)).sum()); sub["tot"] += o.numel()
def run(B, n_steps, count_at=()):
    sch = DDIMScheduler.from_config(c.scheduler_config); sch.set_timesteps(n_steps)
    per = []; subs = {}
    with torch.inference_mode():
        emb = pipe._encode(["a fox"]*B)
        lat = torch.stack([torch.randn((4,32,32), generator=torch.Generator().manual_seed(100+i)) for i in range(B)])
        for i, t in enumerate(sch.timesteps):
            hs = []
            if i in count_at:
                sub.update(n=0, tot=0); hs = [m.register_forward_hook(hook) for m in c.unet.modules()]
            t0 = time.perf_counter()
            inp = sch.scale_model_input(torch.cat([lat, lat]), t)
            noise = c.unet(inp, t, encoder_hidden_states=emb).sample
            u, tx = noise.chunk(2)
            lat = sch.step(u + 7.5*(tx-u), t, lat).prev_sample
            per.append(time.perf_counter()-t0)
            for h in hs: h.remove()
            if i in count_at:
                per[-1] = float("nan"); subs[i] = (sub["n"], sub["tot"], float(lat.abs().max()), int(((lat!=0)&(lat.abs()<TINY)).sum()))
    return per, subs
def dec(per, n):
    k = max(1, n//10)
    return [round(1e3*statistics.mean([p for p in per[i:i+k] if p==p]),1) for i in range(0, n, k)]
run(1, 5)
for flush in (False, True):
    torch.set_flush_denormal(flush)
    for B in (1, 4):
        per, subs = run(B, 50, count_at=(1, 25, 48))
        print(f"flush={flush} B={B} N=50: per-step ms by decile {dec(per,50)}; late/early step ratio (steps 38-47 / 2-11) "
              f"{statistics.mean(per[38:48]) / statistics.mean(per[2:12]):.3f}", flush=True)
        print("   subnormals in UNet module outputs (n, of total, |lat|max, subnormal latents):", subs, flush=True)
        per, _ = run(B, 20)
        print(f"flush={flush} B={B} N=20: per-step ms by decile {dec(per,20)}", flush=True)
