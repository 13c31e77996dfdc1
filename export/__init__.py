"""Export of trained encoders: ONNX files with showsay metadata, and TensorRT engines on the target."""
