from chronicle.entry import main

main()
