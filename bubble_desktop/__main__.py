from bubble_desktop.cli import main

raise SystemExit(main())
