"""Performance of the product: start-up, throughput, live FPS, serving load, memory."""
