"""The lecture in a dozen lines: train a VAE on the ring of Gaussians and save the run.

Run: .venv/bin/python examples/ring_demo.py [OUT_DIR]
"""

import sys

import vaekit as vk

out = sys.argv[1] if len(sys.argv) > 1 else "runs/ring-example"
x, labels = vk.data.ring(n=2000, modes=8, radius=3.0, std=0.25, seed=0)
model = vk.VAE(x_dim=2, z_dim=2, hidden=(128, 128), likelihood=vk.Gaussian(variance=0.1), seed=0)
history = vk.fit(model, x, objective=vk.ELBO(beta=1.0), epochs=400, batch_size=256, lr=1e-3, seed=0)
model.save(out)
history.to_csv(f"{out}/history.csv")
last = history.last()
print(f"saved {out}: reconstruction {last['reconstruction']:.3f}, KL {last['kl']:.3f}, diversity {last['diversity']:.3f}")
