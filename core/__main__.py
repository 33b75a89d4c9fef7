from onnxcam.cli import main

raise SystemExit(main())
