"""Human handoff: queue, agent assignment, agent console, relaying and hand-back.
Not built yet (issue: "Human handoff and the agent console")."""
