"""Data sources: `data.source` names -> loaded SourceData (the registry is `registry.load_source`).

One module per built-in source (digits, shapes, toy2d, torchvision, folder) and the PIL -> tensor
helpers the file-backed ones share (pil).
"""
