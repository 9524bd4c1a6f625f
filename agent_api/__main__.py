from flightctl.agent_api.server import main

main()
