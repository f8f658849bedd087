from lexedge.cli import main

raise SystemExit(main())
