"""framegan: next-frame video prediction with conditional GANs."""
from setuptools import find_packages, setup

setup(
    name="framegan",
    version="0.1.0",
    description="Next-frame video prediction with conditional GANs: G(x, z) + temporal D.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["framegan", "framegan.*"]),
    package_data={"framegan": ["play_page.html"]},  # the page python -m framegan.play serves
    # Lower bounds only: the versions these were developed against; nothing pinned exactly.
    install_requires=[
        "torch>=2.2",
        "torchvision>=0.17",
        "opencv-python>=4.8",
        "av>=12",
        "einops>=0.7",
        "tensorboard>=2.14",
        "numpy>=1.24",
        "omegaconf>=2.3",        # typed structured configs + YAML + dotlist overrides
        "tqdm>=4.66",            # progress bars
        "pillow>=10",            # GIF writing (TensorBoard animated summaries, rollout .gif)
        "torchmetrics>=1.3",     # PSNR / SSIM (well-kept reference implementations)
        "matplotlib>=3.9",       # evaluate's metrics.png (Agg, no display); 3.9.0 checked with numpy 2.4
        "pyyaml>=6",
        # The default inference backend on CPUs (rollout, evaluate, play): ONNX Runtime ran the default G
        # 1.8-3.2x faster than torch eager fp32 at batch 1 (benchmarks/rollout_speed.py). onnx: the
        # exporter's graph edits; onnxscript: torch's dynamo exporter, the fallback exporter.
        # Below 1.29: 1.29.0-1.32.0 (checked) start a telemetry SDK at import that writes a session
        # file (.ses) and a mat-debug-<pid>.log into the user's temp directory; 1.20-1.28 write nothing.
        "onnxruntime>=1.20,<1.29",
        "onnx>=1.23",
        "onnxscript>=0.7",
    ],
    extras_require={
        # ale-py: tests/test_atari.py; vizdoom: tests/test_vizdoom.py; playwright drives Debian's
        # chromium in tests/test_play.py (no browser download)
        "dev": ["pytest>=7", "ruff>=0.4", "psutil>=5.9", "ale-py>=0.9", "vizdoom>=1.3", "playwright>=1.40"],
        "atari": ["ale-py>=0.9"],
        "vizdoom": ["vizdoom>=1.3"],  # 39 MB wheel, ~150 MB installed: engine, scenarios, Freedoom WADs
    },
    entry_points={
        "console_scripts": [
            "framegan-extract=framegan.extract:main",
            "framegan-train=framegan.train:main",
            "framegan-rollout=framegan.rollout:main",
            "framegan-evaluate=framegan.evaluate:main",
        ]
    },
)
