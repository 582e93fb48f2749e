from vacagent.cli import main

raise SystemExit(main())
