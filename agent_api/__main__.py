from agent_api.server import main

main()
