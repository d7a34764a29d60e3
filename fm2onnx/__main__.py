"""``python -m fm2onnx``: the command line, as torchrun's ``-m fm2onnx`` starts it in each worker."""

from fm2onnx.cli import main

if __name__ == "__main__":
    main()
