"""`rcmu web` (`rcmu_agent.tools.web`): the Gradio app over the same `Assistant`.

`app` lays out the page and its Chat tab; `_handlers` is what the buttons do (plain functions over one
`Assistant` and one user), `_teach`, `_memory` and `_library` are the teach panel and the other two tabs,
`_page` and `_show` the look and the HTML the page draws, `_files` whose uploads are whose; `cli` is the
`rcmu web` command. Nothing is imported here: `rcmu` imports `cli` at every start, and Gradio loads only
when the app is built.
"""
