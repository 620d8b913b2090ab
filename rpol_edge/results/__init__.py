"""What a runtime's outputs become, without torch: detections and boxes in original-image
pixels, one box per object (instances), overlays.
"""
