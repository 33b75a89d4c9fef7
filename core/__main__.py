from onnxcam.apps.cli import main

raise SystemExit(main())
