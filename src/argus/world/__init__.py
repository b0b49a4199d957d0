"""A compositional prompt world whose images can be checked exactly.

GenEval (Ghosh et al. 2023) checks real text-to-image models with an object detector on six
task types. Here the world itself is small enough to check exactly: coloured shapes on a plain
background. `grammar` enumerates the prompts (and their fixed train / held-out split), `render`
draws a random image that satisfies a prompt, and `scorer` parses an image and checks every
constraint of the prompt. A model trained on this world (`argus train-model`) has a quality
that is measured, not assumed.
"""
