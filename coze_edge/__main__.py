from coze_edge.cli import main

raise SystemExit(main())
