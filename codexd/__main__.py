from codexd.cli.entry import main

main()
