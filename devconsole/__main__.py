from devconsole.cli import main

raise SystemExit(main())
