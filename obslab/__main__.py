from obslab.cli import main

raise SystemExit(main())
