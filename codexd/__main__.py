from codexd.entry import main

main()
